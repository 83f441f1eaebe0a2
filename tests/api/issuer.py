"""A local OpenID issuer for the API test with identity on and for `make bench`'s identity phase.

It does only what the service reads from a provider: a discovery document naming the issuer and
its `jwks_uri`, and a JWKS of one signing key, served on 127.0.0.1. It mints the JWTs itself
(what a real provider hands out after a sign-in), for the users it is given.

  serve DIR [--alg ES256|EdDSA] [--port P]
      Makes a key in DIR (key.pem) unless one is there, binds 127.0.0.1:P (0: a free port),
      writes DIR/issuer.json {"issuer", "alg", "kid"}, prints the issuer URL on one line, and
      serves until killed (or until the process that started it is gone).
  mint --audience AUD [--ttl SECS] DIR USER...
      Prints one JWT per user, signed with DIR's key: iss, aud, sub (the user), iat, exp.
  mint --audience AUD [--ttl SECS] --in FILE --out FILE DIR
      The same for the user in the first column of each line of FILE (the rest is dropped);
      writes "user jwt" lines.

Needs `cryptography` (tests/api/requirements.txt).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, utils


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def load_key(folder: str):
    with open(os.path.join(folder, "key.pem"), "rb") as fh:
        return serialization.load_pem_private_key(fh.read(), password=None)


def public_jwk(key) -> dict:
    """The key's public JWK, with a kid derived from it (RFC 7638 thumbprint)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        nums = key.public_key().public_numbers()
        jwk = {"crv": "P-256", "kty": "EC", "x": b64(nums.x.to_bytes(32, "big")), "y": b64(nums.y.to_bytes(32, "big"))}
        alg = "ES256"
    else:
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        jwk = {"crv": "Ed25519", "kty": "OKP", "x": b64(raw)}
        alg = "EdDSA"
    kid = b64(hashlib.sha256(json.dumps(jwk, sort_keys=True, separators=(",", ":")).encode()).digest())[:16]
    return {**jwk, "kid": kid, "alg": alg, "use": "sig"}


def make_key(folder: str, alg: str):
    path = os.path.join(folder, "key.pem")
    if os.path.exists(path):
        return load_key(folder)
    key = ec.generate_private_key(ec.SECP256R1()) if alg == "ES256" else ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    os.makedirs(folder, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(pem)
    return key


def serve(folder: str, alg: str, port: int) -> None:
    jwk = public_jwk(make_key(folder, alg))
    parent = os.getppid()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            if self.path == "/.well-known/openid-configuration":
                body = self.server.discovery  # type: ignore[attr-defined]
            elif self.path == "/jwks.json":
                body = self.server.jwks  # type: ignore[attr-defined]
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    issuer = f"http://127.0.0.1:{server.server_address[1]}"
    server.discovery = json.dumps({  # type: ignore[attr-defined]
        "issuer": issuer,
        "jwks_uri": f"{issuer}/jwks.json",
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [jwk["alg"]],
    }).encode()
    server.jwks = json.dumps({"keys": [jwk]}).encode()  # type: ignore[attr-defined]
    with open(os.path.join(folder, "issuer.json"), "w", encoding="utf-8") as fh:
        json.dump({"issuer": issuer, "alg": jwk["alg"], "kid": jwk["kid"]}, fh)
    print(issuer, flush=True)

    def watch_parent():
        # A script that dies without stopping us must not leave a server behind.
        while os.getppid() == parent:
            time.sleep(1)
        server.shutdown()

    threading.Thread(target=watch_parent, daemon=True).start()
    server.serve_forever()


class Minter:
    def __init__(self, folder: str, audience: str, ttl: int):
        self.key = load_key(folder)
        with open(os.path.join(folder, "issuer.json"), encoding="utf-8") as fh:
            meta = json.load(fh)
        self.issuer, self.alg = meta["issuer"], meta["alg"]
        header = {"alg": self.alg, "kid": meta["kid"], "typ": "JWT"}
        self.head = b64(json.dumps(header, separators=(",", ":")).encode())
        self.audience = audience
        self.iat = int(time.time())
        self.exp = self.iat + ttl

    def sign(self, data: bytes) -> bytes:
        if self.alg == "EdDSA":
            return self.key.sign(data)
        r, s = utils.decode_dss_signature(self.key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def jwt(self, user: str) -> str:
        claims = {"iss": self.issuer, "aud": self.audience, "sub": user, "iat": self.iat, "exp": self.exp}
        signing_input = self.head + "." + b64(json.dumps(claims, separators=(",", ":")).encode())
        return signing_input + "." + b64(self.sign(signing_input.encode("ascii")))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve")
    p.add_argument("dir")
    p.add_argument("--alg", choices=["ES256", "EdDSA"], default="ES256")
    p.add_argument("--port", type=int, default=0)
    p = sub.add_parser("mint")
    p.add_argument("dir")
    p.add_argument("--audience", required=True)
    p.add_argument("--ttl", type=int, default=3600)
    p.add_argument("--in", dest="infile")
    p.add_argument("--out")
    p.add_argument("users", nargs="*")
    args = parser.parse_args(argv)

    if args.command == "serve":
        serve(args.dir, args.alg, args.port)
        return 0
    minter = Minter(args.dir, args.audience, args.ttl)
    if args.infile:
        if not args.out:
            parser.error("--in needs --out")
        with open(args.infile, encoding="utf-8") as src, open(args.out, "w", encoding="utf-8") as dst:
            for line in src:
                fields = line.split()
                if fields:
                    dst.write(f"{fields[0]} {minter.jwt(fields[0])}\n")
        return 0
    for user in args.users:
        print(minter.jwt(user))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
