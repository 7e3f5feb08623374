"""C2PA manifests (floatalk.provenance.manifest): `floatalk generate --c2pa-cert/--c2pa-key` signs
the MP4 (AI-generated, tool, settings), `floatalk verify` shows it valid, trusted with the test CA as
anchor, and invalid once the file is changed. The certificates are made here, at test time."""

from __future__ import annotations

import datetime

import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from PIL import Image

from floatalk.cli import main as cli_main
from floatalk.provenance.manifest import TRAINED_ALGORITHMIC_MEDIA, read_manifest

SR = 16000


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "t")]
    )


def _usage(**on: bool) -> x509.KeyUsage:
    names = [
        "digital_signature",
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
        "key_agreement",
        "key_cert_sign",
        "crl_sign",
        "encipher_only",
        "decipher_only",
    ]
    return x509.KeyUsage(**{n: on.get(n, False) for n in names})


@pytest.fixture(scope="module")
def credentials(tmp_path_factory):
    """A throwaway CA and a signing certificate it issued (C2PA refuses self-signed signers)."""
    tmp = tmp_path_factory.mktemp("c2pa")
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def build(subject, issuer, public, signing_key, ca):
        b = x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public)
        b = b.serial_number(x509.random_serial_number())
        b = b.not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(
            now + datetime.timedelta(days=7)
        )
        b = b.add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        if ca:
            b = b.add_extension(_usage(key_cert_sign=True, crl_sign=True), critical=True)
            b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        else:
            b = b.add_extension(_usage(digital_signature=True), critical=True)
            b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            b = b.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
        return b.sign(signing_key, hashes.SHA256())

    ca = build(_name("test root"), _name("test root"), ca_key.public_key(), ca_key, True)
    cert = build(_name("test signer"), ca.subject, key.public_key(), ca_key, False)
    pem = serialization.Encoding.PEM
    (tmp / "chain.pem").write_bytes(cert.public_bytes(pem) + ca.public_bytes(pem))
    (tmp / "ca.pem").write_bytes(ca.public_bytes(pem))
    (tmp / "key.pem").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return tmp


@pytest.fixture(scope="module")
def tiny_weights_dir(tmp_path_factory):
    import torch

    from conftest import randomize_
    from floatalk.config import preset
    from floatalk.models.float_model import FloatModel
    from floatalk.weights import save_model

    torch.manual_seed(0)
    model = FloatModel(preset("tiny"))
    randomize_(model.fmt, 1)
    path = tmp_path_factory.mktemp("c2pa-w") / "weights"
    save_model(model, path)
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("c2pa-in")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp / "face.png")
    import wave

    t = np.arange(int(SR * 0.8)) / SR
    x = 0.3 * np.sin(2 * np.pi * 200 * t)
    with wave.open(str(tmp / "speech.wav"), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(SR)
        f.writeframes((x * 32767).astype("<i2").tobytes())
    return tmp


def _generate(inputs, weights, out, *extra):
    argv = ["generate", "-q", "--image", str(inputs / "face.png"), "--audio", str(inputs / "speech.wav")]
    argv += ["--weights", str(weights), "--no-crop", "--size", "256", "--seed", "3", "-o", str(out), *extra]
    return cli_main(argv)


def test_signed_output_verifies_and_a_tampered_one_does_not(
    credentials, inputs, tiny_weights_dir, tmp_path, capsys
):
    out = tmp_path / "signed.mp4"
    sign = ["--c2pa-cert", str(credentials / "chain.pem"), "--c2pa-key", str(credentials / "key.pem")]
    assert _generate(inputs, tiny_weights_dir, out, *sign) == 0
    capsys.readouterr()
    report = read_manifest(out)
    assert report is not None and report.valid and report.state == "Valid"
    assert report.source_type == TRAINED_ALGORITHMIC_MEDIA and report.generator.startswith("floatalk")
    assert report.parameters["seed"] == 3 and report.parameters["watermark"] is True
    assert read_manifest(out, credentials / "ca.pem").state == "Trusted"

    assert cli_main(["verify", str(out)]) == 0
    text = capsys.readouterr().out
    assert "watermark found" in text and "C2PA manifest: valid" in text and "trainedAlgorithmicMedia" in text

    data = bytearray(out.read_bytes())
    at = data.find(b"mdat") + 400
    data[at : at + 8] = bytes(b ^ 0xFF for b in data[at : at + 8])
    tampered = tmp_path / "tampered.mp4"
    tampered.write_bytes(bytes(data))
    assert not read_manifest(tampered).valid
    assert cli_main(["verify", str(tampered)]) == 1
    assert "C2PA manifest: INVALID" in capsys.readouterr().out

    plain = tmp_path / "plain.mp4"
    assert _generate(inputs, tiny_weights_dir, plain) == 0
    assert read_manifest(plain) is None


def test_bad_credentials_are_one_line_errors_and_leave_no_file(
    credentials, inputs, tiny_weights_dir, tmp_path, capsys
):
    out = tmp_path / "x.mp4"
    assert _generate(inputs, tiny_weights_dir, out, "--c2pa-cert", str(credentials / "chain.pem")) == 2
    assert "both --c2pa-cert and --c2pa-key" in capsys.readouterr().err
    (tmp_path / "junk.pem").write_text("not a key")
    args = ["--c2pa-cert", str(credentials / "chain.pem"), "--c2pa-key", str(tmp_path / "junk.pem")]
    assert _generate(inputs, tiny_weights_dir, out, *args) == 2
    err = capsys.readouterr().err
    assert "not a PEM file" in err and len(err.strip().splitlines()) == 1
    # a valid PEM that does not match the certificate: the signing itself fails, nothing is left
    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp_path / "other.pem").write_bytes(other)
    args = ["--c2pa-cert", str(credentials / "chain.pem"), "--c2pa-key", str(tmp_path / "other.pem")]
    code = _generate(inputs, tiny_weights_dir, out, *args)
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("floatalk: error:"), err
    assert not out.exists() and not list(tmp_path.glob(".x.mp4*"))
