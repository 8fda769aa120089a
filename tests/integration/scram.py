"""A SCRAM-SHA-256 client (RFC 5802, 7677) for the tests, from hashlib and hmac."""
import base64
import hashlib
import hmac
import os


class ScramClient:
    def __init__(self, user, password):
        self.user = user
        self.password = password.encode()
        self.nonce = base64.b64encode(os.urandom(18)).decode()
        self.server_signature = None

    def first(self):
        """The client-first message (base64)."""
        name = self.user.replace("=", "=3D").replace(",", "=2C")
        self.first_bare = f"n={name},r={self.nonce}"
        return base64.b64encode(("n,," + self.first_bare).encode()).decode()

    def final(self, server_first_b64):
        """The client-final message (base64) for the server-first challenge."""
        server_first = base64.b64decode(server_first_b64).decode()
        attrs = dict(item.split("=", 1) for item in server_first.split(","))
        assert attrs["r"].startswith(self.nonce), "server nonce must extend ours"
        salt = base64.b64decode(attrs["s"])
        iterations = int(attrs["i"])
        salted = hashlib.pbkdf2_hmac("sha256", self.password, salt, iterations)
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = "c=biws,r=" + attrs["r"]
        auth_message = ",".join([self.first_bare, server_first, without_proof]).encode()
        client_signature = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, client_signature))
        server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
        self.server_signature = hmac.new(server_key, auth_message, hashlib.sha256).digest()
        final = without_proof + ",p=" + base64.b64encode(proof).decode()
        return base64.b64encode(final.encode()).decode()

    def verify(self, server_final_b64):
        """True when the server-final message proves the server knew our keys."""
        server_final = base64.b64decode(server_final_b64).decode()
        if not server_final.startswith("v="):
            return False
        return base64.b64decode(server_final[2:]) == self.server_signature


def plain(user, password):
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()
