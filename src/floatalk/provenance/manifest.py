"""C2PA provenance manifest: a signed statement, inside the MP4, that it is AI-generated (issue 16).

Signing uses the user's own certificate chain and private key (PEM files) through c2pa-python (the
Content Authenticity Initiative's binding of c2pa-rs; the `c2pa` extra). The manifest has one
`c2pa.actions.v2` assertion: action `c2pa.created`, digital source type IPTC
`trainedAlgorithmicMedia`, the software agent (floatalk and its version) and the generation's
settings as parameters. c2pa-rs adds the BMFF hash of the file, so any change to the video or sound
afterwards makes the manifest invalid (`assertion.bmffHash.mismatch`).

Reading reports the validation state: "Trusted" (the chain ends in an anchor given to `--c2pa-trust`),
"Valid" (the signature and hashes hold; the signer is not known to be trusted), or "Invalid".
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError

__all__ = ["ManifestReport", "ManifestSigner", "read_manifest"]

TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
_ALGORITHMS = ("es256", "es384", "es512", "ps256", "ps384", "ps512", "ed25519")
_INSTALL = "C2PA manifests need c2pa-python: pip install 'floatalk[c2pa]' (make install has it)"


def _c2pa():
    try:
        import c2pa
    except ImportError as exc:
        raise InputError(f"{_INSTALL} ({exc})") from None
    return c2pa


def _read_pem(path: str | os.PathLike[str], what: str) -> bytes:
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read the C2PA {what} {p}: {exc.strerror}") from None
    if b"-----BEGIN" not in data:
        raise InputError(f"the C2PA {what} {p} is not a PEM file")
    return data


@dataclass(frozen=True)
class ManifestSigner:
    """The user's signing credentials.

    Attributes:
        cert: PEM file with the signing certificate followed by its chain (not a self-signed one:
            C2PA refuses those).
        key: PEM file with the private key.
        alg: the signature algorithm of the key (es256 for a P-256 key, ps256 for RSA, ...).
    """

    cert: str | os.PathLike[str]
    key: str | os.PathLike[str]
    alg: str = "es256"

    def __post_init__(self) -> None:
        if self.alg not in _ALGORITHMS:
            raise InputError(
                f"unknown C2PA signing algorithm {self.alg!r}; choose one of {', '.join(_ALGORITHMS)}"
            )
        _read_pem(self.cert, "certificate")
        _read_pem(self.key, "private key")

    def manifest(self, title: str, parameters: dict[str, Any]) -> dict[str, Any]:
        from .. import __version__

        agent = {"name": "floatalk", "version": __version__}
        action = {
            "action": "c2pa.created",
            "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
            "softwareAgent": agent,
            "parameters": parameters,
        }
        return {
            "claim_generator_info": [agent],
            "title": title,
            "format": "video/mp4",
            "assertions": [{"label": "c2pa.actions.v2", "data": {"actions": [action]}}],
        }

    def sign(self, source: Path, dest: Path, parameters: dict[str, Any]) -> None:
        """Write `source` with the signed manifest to `dest` (a different, new path)."""
        c2pa = _c2pa()
        info = c2pa.C2paSignerInfo(
            alg=self.alg.encode(),
            sign_cert=_read_pem(self.cert, "certificate"),
            private_key=_read_pem(self.key, "private key"),
            ta_url=None,
        )
        try:
            signer = c2pa.Signer.from_info(info)
            builder = c2pa.Builder(self.manifest(dest.name, parameters))
            with open(source, "rb") as src, open(dest, "w+b") as dst:
                builder.sign(signer, "video/mp4", src, dst)
        except c2pa.C2paError as exc:
            raise InputError(
                f"C2PA signing failed: {str(exc).splitlines()[0]} (check --c2pa-cert/--c2pa-key)"
            ) from None


@dataclass(frozen=True)
class ManifestReport:
    """The C2PA manifest of a file: its validation state and what it says.

    Attributes:
        state: "Trusted", "Valid" or "Invalid" (c2pa-rs' validation state).
        failures: the failing validation codes (e.g. assertion.bmffHash.mismatch).
        generator: the claim generator's name and version.
        source_type: the digital source type of its creating action.
    """

    state: str
    failures: tuple[str, ...] = ()
    generator: str = ""
    source_type: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return self.state in ("Valid", "Trusted")

    @property
    def ai_generated(self) -> bool:
        return self.source_type == TRAINED_ALGORITHMIC_MEDIA

    def line(self) -> str:
        if not self.valid:
            return f"C2PA manifest: INVALID ({', '.join(self.failures) or self.state})"
        trust = "trusted signer" if self.state == "Trusted" else "signer not in the trust list"
        kind = "AI-generated (trainedAlgorithmicMedia)" if self.ai_generated else self.source_type or "?"
        return f"C2PA manifest: valid, {trust}; {kind}, by {self.generator}"


def read_manifest(
    path: str | os.PathLike[str], trust_anchors: str | os.PathLike[str] | None = None
) -> ManifestReport | None:
    """The C2PA manifest of the file at `path`, validated; None when it has none."""
    c2pa = _c2pa()
    context = None
    if trust_anchors is not None:
        anchors = _read_pem(trust_anchors, "trust anchors").decode()
        settings = c2pa.Settings.from_dict(
            {"verify": {"verify_trust": True}, "trust": {"trust_anchors": anchors}}
        )
        context = c2pa.Context(settings)
    try:
        reader = c2pa.Reader(os.fspath(path), context=context) if context else c2pa.Reader(os.fspath(path))
    except c2pa.C2paError as exc:
        if "ManifestNotFound" in type(exc).__name__ or "no JUMBF" in str(exc):
            return None
        return ManifestReport(state="Invalid", failures=(str(exc).splitlines()[0],))
    with reader:
        state = str(reader.get_validation_state())
        results = reader.get_validation_results() or {}
        data = json.loads(reader.json())
    failures = tuple(
        item["code"]
        for item in (results.get("activeManifest") or {}).get("failure", [])
        if item.get("code") != "signingCredential.untrusted"  # trust is the state's business
    )
    manifest = data.get("manifests", {}).get(data.get("active_manifest"), {})
    generator = ", ".join(
        f"{g.get('name', '?')} {g.get('version', '')}".strip()
        for g in manifest.get("claim_generator_info", [])
    )
    source_type, parameters = "", {}
    for assertion in manifest.get("assertions", []):
        if assertion.get("label", "").startswith("c2pa.actions"):
            for action in assertion.get("data", {}).get("actions", []):
                if action.get("action") == "c2pa.created":
                    source_type = action.get("digitalSourceType", "")
                    parameters = action.get("parameters", {})
    if failures and state != "Invalid":
        state = "Invalid"
    return ManifestReport(state, failures, generator, source_type, parameters)
