"""Issue an API token for a user; the token is printed once, on the last line, and only its hash is stored."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from labeling import services


class Command(BaseCommand):
    help = "Create an API token for USERNAME and print it last, on its own line (it cannot be shown again)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username", help="The user the token acts as.")
        parser.add_argument("--name", default="", help="A note to tell this token apart, e.g. 'ci' or 'notebook'.")

    def handle(self, *args: Any, **options: Any) -> None:
        username = options["username"]
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named {username!r}; create one first (e.g. with add_member).")
        if not user.is_active:
            raise CommandError(f"The user {username!r} is inactive; the API refuses tokens of inactive users.")
        token, raw = services.api_token_create(user=user, name=options["name"])
        label = f" ({token.name})" if token.name else ""
        self.stderr.write(
            f"Created API token {token.prefix}…{label} for {username}. "
            "Send it as `Authorization: Bearer <token>`; it is shown only now."
        )
        self.stdout.write(raw)
