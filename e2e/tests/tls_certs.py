"""Certificates for the TLS tests, made with the `openssl` command: a CA
and the broker and client certificates it signs (X.509 v3, as webpki
requires), as PEM files."""

from __future__ import annotations

import subprocess
from pathlib import Path


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


class Certs:
    """A CA and certificates it signed, as PEM files in `directory`."""

    def __init__(self, directory: Path, name: str = "ca"):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.ca_key, self.ca_crt = self.dir / f"{name}.key", self.dir / f"{name}.crt"
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(self.ca_key),
                "-out", str(self.ca_crt), "-days", "30", "-subj", f"/CN={name}")

    def issue(self, cn: str, extensions: str, subject: str = "") -> tuple[Path, Path]:
        """A key and a certificate for `cn` (or the whole `subject`, as
        openssl writes one: `/O=Example/OU=apps/CN=alice`), signed by this CA
        (X.509 v3)."""
        key, csr, crt = (self.dir / f"{cn}.key", self.dir / f"{cn}.csr", self.dir / f"{cn}.crt")
        ext = self.dir / f"{cn}.ext"
        ext.write_text(extensions + "\n")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
                "-subj", subject or f"/CN={cn}")
        openssl("x509", "-req", "-in", str(csr), "-CA", str(self.ca_crt), "-CAkey",
                str(self.ca_key), "-CAcreateserial", "-out", str(crt), "-days", "30",
                "-extfile", str(ext))
        return key, crt

    def server(self, cn: str = "broker") -> tuple[Path, Path]:
        # Both: brokers also present it to each other (inter-broker TLS).
        return self.issue(cn, "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                              "extendedKeyUsage=serverAuth,clientAuth")

    def client(self, cn: str, subject: str = "") -> tuple[Path, Path]:
        return self.issue(cn, "extendedKeyUsage=clientAuth", subject)


def keystore(certs: Certs, path: Path, cn: str = "broker") -> Path:
    """Kafka's PEM keystore: the private key and the certificate chain in one file."""
    key, crt = certs.server(cn)
    path.write_bytes(key.read_bytes() + crt.read_bytes())
    return path
