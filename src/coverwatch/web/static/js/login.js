// The sign-in form: POST /api/v1/login, then go where the user was headed.

const form = document.getElementById("login");
const error = document.getElementById("error");

function target() {
  const next = new URLSearchParams(location.search).get("next") || "/";
  // Only a path on this origin, judged *after* the URL parser has had its say: it drops
  // tabs and newlines and reads "\" as "/", so "/\t/evil.example" is "//evil.example".
  if (!next.startsWith("/")) return "/";
  let url;
  try { url = new URL(next, location.origin); } catch (err) { return "/"; }
  if (url.origin !== location.origin) return "/";
  // The absolute URL, not the path: a path like "//evil.example" (from "/.//evil.example")
  // would be read again as another host.
  return url.href;
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
