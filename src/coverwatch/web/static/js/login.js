// The sign-in form: POST /api/v1/login, then go where the user was headed.

const form = document.getElementById("login");
const error = document.getElementById("error");

function target() {
  const next = new URLSearchParams(location.search).get("next") || "/";
  // Only same-site paths: never an open redirect.
  return next.startsWith("/") && !next.startsWith("//") && !next.startsWith("/\\") ? next : "/";
}

form.addEventListener("submit", async (e) => {
  e.preventDefault();
  error.textContent = "";
  const username = form.username.value.trim();
  const password = form.password.value;
  if (!username || !password) { error.textContent = "Enter your username and password."; return; }
  const button = form.querySelector("button");
  button.disabled = true;
  try {
    const res = await fetch("/api/v1/login", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ username, password }),
    });
    if (res.ok) { location.assign(target()); return; }
    const data = await res.json().catch(() => ({}));
    error.textContent = res.status === 429 ? "Too many attempts: wait a minute and try again."
      : res.status === 401 ? "Wrong username or password." : `Sign-in failed (${res.status}): ${JSON.stringify(data.detail ?? "")}`;
  } catch (err) {
    error.textContent = "The server cannot be reached.";
  } finally {
    button.disabled = false;
  }
});
