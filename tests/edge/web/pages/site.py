"""The page over real HTTP for HTML-level tests: a served box (tests/edge/web/apibox.py) and logged-in clients."""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx

from edge.security.roles import Role
from tests.edge.web.apibox import ServedBox, password_of

_CSRF = re.compile(r'<meta name="csrf-token" content="([0-9a-f]*)">')


class PageClient(httpx.Client):
    """An httpx client usable in `with` after it has already sent requests (the login)."""

    def __enter__(self) -> PageClient:
        return self


@dataclass
class Site:
    box: ServedBox

    @property
    def url(self) -> str:
        return self.box.url

    def client(self) -> PageClient:
        return PageClient(base_url=self.box.url, follow_redirects=False, timeout=30)

    def login(self, role: Role | str, *, lang: str = "zh") -> PageClient:
        """A client holding the session cookie of the seeded user of `role` (username = role, see apibox.seed)."""
        role = Role(role)
        client = self.client()
        response = client.post("/login", data={"username": role.value, "password": password_of(role), "next": "/"})
        assert response.status_code == 303, response.text
        if lang != "zh":
            client.get(f"/lang/{lang}")
        return client

    def csrf(self, client: httpx.Client, path: str = "/") -> str:
        """This session's CSRF token, read off a page as a browser would."""
        response = client.get(path)
        match = _CSRF.search(response.text)
        assert match and match.group(1), f"no CSRF token on {path}"
        return match.group(1)

    def post_form(self, client: httpx.Client, path: str, data: dict[str, str], *, page: str = "/") -> httpx.Response:
        """A form POST with this session's CSRF token, as the browser sends it."""
        return client.post(path, data={"_csrf": self.csrf(client, page), **data})
