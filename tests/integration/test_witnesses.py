"""Witnesses of the signed tree heads (issue 23, deliverable 2): each head is
time-stamped by an RFC 3161 authority (``openssl ts`` here) and given to several
destinations; one that cannot be reached keeps its heads and gets them, in order, at the
next attempt; failures are counted for /metrics and the audit page; ingest never waits."""

from __future__ import annotations

import asyncio
import shutil
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from tsakit import authority, poster
from typer.testing import CliRunner

from coverwatch.cli import app
from coverwatch.evidence.keys import load_signing_key
from coverwatch.evidence.service import anchor_now, run_anchoring, verify_now
from coverwatch.evidence.timestamps import check_timestamps, tsr_file
from coverwatch.evidence.treeheads import head_now
from coverwatch.evidence.witness import Witnesses
from coverwatch.settings import Settings
from coverwatch.storage import Store, open_store

T0 = 1_767_225_600_000_000


def _fix(i: int) -> dict[str, Any]:
    return {"kind": "fix", "t_us": T0 + i, "officer": "O1", "x": 1.0, "y": 2.0,
            "accuracy": 5.0, "source": "test"}


class Flaky:
    """A destination that refuses its first ``fails`` heads, then takes them."""

    def __init__(self, fails: int) -> None:
        self.fails, self.taken = fails, []  # type: list[dict[str, Any]]

    def __call__(self, target: str, head: dict[str, Any]) -> None:
        if self.fails:
            self.fails -= 1
            raise ConnectionError("unreachable")
        self.taken.append(head)


def test_an_unreachable_witness_keeps_its_heads_and_gets_them_in_order(
    store: Store, tmp_path: Path,
) -> None:
    key = load_signing_key(tmp_path / "keys" / "audit.key")
    heads = tmp_path / "tree-heads.jsonl"
    copy = tmp_path / "elsewhere" / "heads.jsonl"
    flaky = Flaky(fails=2)
    sent: dict[str, Any] = {}

    def send(target: str, head: dict[str, Any]) -> None:
        if target == "https://hook.example/x?token=s3cret":
            flaky(target, head)
        else:
            from coverwatch.evidence.witness import send_head
            send_head(target, head)
            sent[target] = head

    w = Witnesses([str(copy), "https://hook.example/x?token=s3cret"], None, heads, send=send)
    store.append_audit("ann", "user.roles", "user:a")
    first = head_now(store, key, "yard", heads)
    failed = w.witness(first)
    assert len(failed) == 1 and "did not take the head" in failed[0]
    assert "s3cret" not in failed[0] and "ConnectionError" in failed[0]
    store.append_audit("ann", "user.roles", "user:b")
    second = head_now(store, key, "yard", heads)
    assert w.witness(second)  # still refused: both wait
    states = w.as_dict()
    hook = next(v for k, v in states.items() if "hook.example" in k)
    assert hook["pending"] == 2 and hook["failed"] == 2 and hook["sent"] == 0
    assert w.flush() == [] and w.pending() == 0
    assert flaky.taken == [first, second]  # oldest first
    # The file witness took each head as it came: a copy the examiner can give --heads.
    assert [orjson.loads(x) for x in copy.read_text().splitlines()] == [first, second]
    assert (copy.stat().st_mode & 0o777) == 0o600


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
def test_heads_are_time_stamped_again_after_the_authority_failed(
    store: Store, tmp_path: Path,
) -> None:
    tsa = authority(tmp_path / "tsa", "Test")
    good = poster(tsa)
    down = {"on": True}

    def post(url: str, query: bytes) -> bytes:
        if down["on"]:
            raise ConnectionError("the authority is down")
        return good(url, query)

    key = load_signing_key(tmp_path / "keys" / "audit.key")
    heads = tmp_path / "tree-heads.jsonl"
    w = Witnesses([], "http://tsa.invalid/", heads, post=post)
    store.append_audit("ann", "user.roles", "user:a")
    head = head_now(store, key, "yard", heads)
    [why] = w.witness(head)
    assert why.startswith("the time-stamping authority at http://tsa.invalid/ gave no")
    assert not tsr_file(heads).exists()
    down["on"] = False
    assert w.flush() == []
    assert check_timestamps(heads, [head], tsa / "ca.pem") == (1, [])


def test_anchoring_gives_each_head_to_its_witnesses_and_the_audit_page_shows_them(
    store: Store, tmp_path: Path,
) -> None:
    copy = tmp_path / "copy.jsonl"
    settings = Settings(site_path=tmp_path / "site.yaml", data_dir=tmp_path,
                        anchor_file=tmp_path / "anchors.jsonl", witnesses=(str(copy),))
    w = Witnesses(settings.witnesses, None, tmp_path / "tree-heads.jsonl")
    store.append_audit("ann", "user.roles", "user:a")
    anchor_now(store, settings, "yard", witnesses=w)
    [line] = copy.read_text().splitlines()
    assert orjson.loads(line) == orjson.loads(
        (tmp_path / "tree-heads.jsonl").read_text().splitlines()[-1])
    page = verify_now(store, settings, "yard", w)
    assert page["witnesses"][f"copy:{copy}"]["sent"] == 1


def test_a_witness_that_hangs_never_holds_up_ingest(store: Store, tmp_path: Path) -> None:
    release = threading.Event()
    calls: list[int] = []

    def hang(target: str, head: dict[str, Any]) -> None:
        calls.append(int(head["size"]))
        if not release.wait(20):
            raise TimeoutError("hung")

    settings = Settings(site_path=tmp_path / "site.yaml", data_dir=tmp_path,
                        anchor_file=tmp_path / "anchors.jsonl", anchor_every_s=0.05,
                        witness_retry_s=0.05, witnesses=("https://hook.example/h",))
    w = Witnesses(settings.witnesses, None, tmp_path / "tree-heads.jsonl", send=hang)
    store.append_events([_fix(0)])

    async def scenario() -> int:
        task = asyncio.create_task(run_anchoring(store, settings, "yard", witnesses=w))
        for _ in range(400):  # the witness is being sent the head, and hangs there
            if calls:
                break
            await asyncio.sleep(0.01)
        assert calls, "the head never went to the witness"
        # Meanwhile events are stored and answered as ever.
        done = await asyncio.to_thread(store.append_events, [_fix(i) for i in range(1, 50)])
        release.set()
        task.cancel()
        return done.inserted

    assert asyncio.run(scenario()) == 49


def test_witness_metrics_name_each_witness(tmp_path: Path) -> None:
    from coverwatch.api.metrics import _witness_metrics

    # The heads file in the test's own folder: its pending queue beside it must not
    # carry heads over from another run.
    w = Witnesses(["/tmp/x.jsonl"], "https://tsa.example/?key=k", tmp_path / "h.jsonl",
                  send=Flaky(1), post=lambda u, q: (_ for _ in ()).throw(OSError("down")))
    w.witness({"size": 1, "site": "yard"})
    families = {f.name: f for f in _witness_metrics(SimpleNamespace(witnesses=w))}
    samples = {(s.labels["witness"], s.labels.get("outcome")): s.value
               for f in families.values() for s in f.samples}
    assert samples[("tsa", "failed")] == 1 and samples[("tsa", None)] == 1
    assert samples[("copy:/tmp/x.jsonl", "failed")] == 1


def test_cli_head_goes_to_every_witness_and_names_the_one_that_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("COVERWATCH_TSA_URL", raising=False)
    data = tmp_path / "data"
    store = open_store(None, data)
    store.append_audit("ann", "user.roles", "user:a")
    store.close()
    copy = tmp_path / "copy" / "heads.jsonl"
    r = CliRunner().invoke(app, ["audit", "head", "--data-dir", str(data), "--witness",
                                 str(copy), "--witness", "nosuchscheme://x"])
    assert r.exit_code == 1 and "nosuchscheme" in r.output and "did not take" in r.output
    assert len(copy.read_text().splitlines()) == 1  # the others still got it


def test_heads_waiting_for_a_witness_that_is_down_outlive_a_restart(
    store: Store, tmp_path: Path,
) -> None:
    """The queue is kept beside the heads (0600, no address in it): a witness down across
    a restart gets every head it missed, in order, from the new process's witnesses."""
    import stat

    from coverwatch.evidence.witness import pending_file

    key = load_signing_key(tmp_path / "keys" / "audit.key")
    heads = tmp_path / "tree-heads.jsonl"
    target = "https://hook.example/h?token=s3cret"
    down = Flaky(fails=10**6)
    before = Witnesses([target], None, heads, send=down)
    made = []
    for i in range(3):
        store.append_events([_fix(i)])
        made.append(head_now(store, key, "yard", heads))
        before.witness(made[-1])
    assert before.pending() == 3
    kept = pending_file(heads)
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert b"s3cret" not in kept.read_bytes() and b"hook.example" not in kept.read_bytes()
    del before  # the server stops; the witness is still down when it starts again
    up = Flaky(fails=1)
    after = Witnesses([target], None, heads, send=up)
    assert after.pending() == 3
    assert after.flush()  # still down at the first attempt: kept
    assert Witnesses([target], None, heads, send=up).pending() == 3
    assert after.flush() == []
    assert up.taken == made  # every head, oldest first
    assert Witnesses([target], None, heads, send=up).pending() == 0
    # Another witness configured after the restart starts with an empty queue.
    assert Witnesses(["https://other.example/h"], None, heads).pending() == 0


def test_two_writers_of_the_witness_queue_lose_no_head(store: Store, tmp_path: Path) -> None:
    """The server and the CLI (``audit head``) queue heads for the same witness at once:
    each change is merged with the queues on disk under a lock, so neither write drops the
    other's heads, and the one that delivers takes the other's too."""
    from coverwatch.evidence.witness import pending_file

    key = load_signing_key(tmp_path / "keys" / "audit.key")
    heads = tmp_path / "tree-heads.jsonl"
    target = "https://hook.example/h"
    down = Flaky(fails=10**6)
    server, cli = (Witnesses([target], None, heads, send=down) for _ in range(2))
    made = []
    for i, w in enumerate((server, cli, server)):  # both read the queue before either wrote
        store.append_events([_fix(i)])
        made.append(head_now(store, key, "yard", heads))
        w.witness(made[-1])
    assert Witnesses([target], None, heads).pending() == 3
    # Many heads from two threads at once, each with a queue object of its own.
    extra: list[dict[str, Any]] = []
    for i in range(3, 23):
        store.append_events([_fix(i)])
        extra.append(head_now(store, key, "yard", heads))
    writers = [Witnesses([target], None, heads, send=down) for _ in range(2)]
    threads = [threading.Thread(target=lambda w=w, part=extra[n::2]: [w.witness(h) for h in part])
               for n, w in enumerate(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    queued = orjson.loads(pending_file(heads).read_bytes())
    assert sorted(h["size"] for q in queued.values() for h in q) == sorted(
        h["size"] for h in made + extra)
    up = Flaky(fails=0)
    assert Witnesses([target], None, heads, send=up).flush() == []
    assert sorted(h["size"] for h in up.taken) == sorted(h["size"] for h in made + extra)
    assert Witnesses([target], None, heads).pending() == 0
