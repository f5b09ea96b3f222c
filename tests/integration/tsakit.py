"""A local RFC 3161 time-stamping authority for tests: ``openssl ts`` behind a CA of its own."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

__all__ = ["authority", "poster"]

TSA_CONF = """
[ tsa ]
default_tsa = local
[ local ]
dir = {dir}
serial = {dir}/serial
signer_cert = {dir}/tsa.pem
signer_key = {dir}/tsa.key
certs = {dir}/tsa.pem
signer_digest = sha256
default_policy = 1.2.3.4.1
digests = sha256
accuracy = secs:1
ess_cert_id_chain = no
ess_cert_id_alg = sha256
"""


def _run(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def authority(d: Path, name: str) -> Path:
    """A CA and a time-stamping certificate under it; returns the directory."""
    d.mkdir()
    _run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", "ca.key", "-out", "ca.pem", "-subj", f"/CN={name} CA", "-days", "2",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign", cwd=d)
    _run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", "tsa.key", "-out", "tsa.csr", "-subj", f"/CN={name} TSA", cwd=d)
    (d / "ext.cnf").write_text("extendedKeyUsage=critical,timeStamping\n"
                               "keyUsage=critical,digitalSignature\n")
    _run("x509", "-req", "-in", "tsa.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "tsa.pem", "-days", "2", "-extfile", "ext.cnf", cwd=d)
    (d / "serial").write_text("01\n")
    (d / "tsa.cnf").write_text(TSA_CONF.format(dir=d))
    return d


def poster(authority: Path) -> Callable[[str, bytes], bytes]:
    def post(url: str, query: bytes) -> bytes:
        assert url == "http://tsa.invalid/"
        (authority / "q.tsq").write_bytes(query)
        _run("ts", "-reply", "-config", "tsa.cnf", "-queryfile", "q.tsq", "-out", "r.tsr",
             cwd=authority)
        return (authority / "r.tsr").read_bytes()
    return post
