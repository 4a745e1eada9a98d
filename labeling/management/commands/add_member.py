"""Give a user a role in a project, creating the user when there is none by that name."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from labeling import selectors, services
from labeling.models import Project, ProjectRole


class Command(BaseCommand):
    help = "Add a user to a project with a role (annotator, reviewer or admin); creates the user when missing."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("project", help="Project slug.")
        parser.add_argument("username", help="The user's name; a new user is created when there is none.")
        parser.add_argument(
            "--role",
            default=ProjectRole.ANNOTATOR.value,
            help="annotator, reviewer or admin (default annotator). Each role includes the ones before it.",
        )
        parser.add_argument(
            "--password", help="Set this password (otherwise a new user cannot log in until one is set)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        slug, username, role = options["project"], options["username"], options["role"]
        project = Project.objects.filter(slug=slug).first()
        if project is None:
            raise CommandError(f"No project with the slug {slug!r}.")
        if not username.strip():
            raise CommandError("A username cannot be empty.")
        previous = selectors.member_role_get(project=project, username=username)
        try:
            _, created = services.member_add(
                project=project, username=username, role=role, password=options["password"] or None
            )
        except services.ProjectError as exc:
            raise CommandError(str(exc)) from exc
        if created:
            login = "with the given password" if options["password"] else "without a password (set one to log in)"
            self.stdout.write(f"Created user {username} {login} and made them {role} of {project.slug}.")
        elif previous is None:
            self.stdout.write(f"Made existing user {username} {role} of {project.slug}.")
        elif previous != role:
            self.stdout.write(f"Changed {username}'s role in {project.slug} from {previous} to {role}.")
        else:
            self.stdout.write(f"{username} is already {role} of {project.slug}; nothing changed.")
        if options["password"] and not created:
            self.stdout.write(f"Set a new password for {username}.")
