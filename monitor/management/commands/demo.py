from django.core.management.base import BaseCommand

from monitor.demo import ensure_users, seed_demo


class Command(BaseCommand):
    help = "Seed the demo model, users and traffic (idempotent)."

    def handle(self, *args, **options) -> None:
        model = seed_demo(stdout=self.stdout)
        logins = ensure_users(self.stdout)
        self.stdout.write(f"demo model: {model.slug} ({model.queries_logged():,} queries, {model.client_count()} clients)")
        self.stdout.write("demo logins (role: username / password):")
        for role, username, password in logins:
            self.stdout.write(f"  {role:<10} {username} / {password}")
