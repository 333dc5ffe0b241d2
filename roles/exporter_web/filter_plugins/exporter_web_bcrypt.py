"""exporter_web_bcrypt: the bcrypt hash ($2b$) of a password, computed on the controller.

    {{ password | exporter_web_bcrypt(seed, cost) }}

The salt is derived from the seed and the password (SHA-256), so the same inputs give the same hash
and a role run twice changes nothing; a different seed (the host and the user name) gives a different
hash for the same password. bcrypt itself is the `bcrypt` package of the controller's lock
(requirements/controller.txt); Ansible's password_hash filter would need passlib, and Python's crypt
module is gone in 3.13.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from ansible.errors import AnsibleFilterError

_STANDARD = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_BCRYPT = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def _salt(seed: str, password: str) -> str:
    """22 characters of bcrypt's base64 alphabet encoding 16 bytes derived from seed and password."""
    digest = hashlib.sha256(f"exporter_web\0{seed}\0{password}".encode()).digest()[:16]
    return base64.b64encode(digest).decode().rstrip("=").translate(str.maketrans(_STANDARD, _BCRYPT))


def exporter_web_bcrypt(password: Any, seed: str, cost: int = 10) -> str:
    secret = str(password)
    if not 4 <= int(cost) <= 31:
        raise AnsibleFilterError(f"exporter_web_bcrypt: cost must be 4-31, got {cost}")
    if len(secret.encode()) > 72:
        raise AnsibleFilterError("exporter_web_bcrypt: bcrypt reads at most 72 bytes of a password")
    try:
        import bcrypt
    except ImportError as exc:
        raise AnsibleFilterError(
            "exporter_web_bcrypt: the controller needs the bcrypt package (requirements/controller.txt, make venv)"
        ) from exc
    setting = f"$2b${int(cost):02d}${_salt(str(seed), secret)}"
    return bcrypt.hashpw(secret.encode(), setting.encode()).decode()


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"exporter_web_bcrypt": exporter_web_bcrypt}
