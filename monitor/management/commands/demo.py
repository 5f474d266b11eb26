from django.core.management.base import BaseCommand

from monitor.demo.credit import seed_credit_pipeline
from monitor.demo.seed import ensure_users, seed_demo
from monitor.ingestion import counts
from monitor.models import RegisteredModel


class Command(BaseCommand):
    help = "Seed the demo model, users and traffic (idempotent)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--if-empty", action="store_true",
                            help="leave the models alone when any model is registered (what `make run` uses)")

    def handle(self, *args, **options) -> None:
        if options["if_empty"] and RegisteredModel.objects.exists():
            self.stdout.write("models are registered already; the demo model was not seeded")
        else:
            model = seed_demo(stdout=self.stdout)
            self.stdout.write(f"demo model: {model.slug} ({counts.queries_logged(model):,} queries, {counts.client_count(model)} clients)")
            seed_credit_pipeline(stdout=self.stdout)
        logins = ensure_users(self.stdout)
        self.stdout.write("demo logins (role: username / password):")
        for role, username, password in logins:
            self.stdout.write(f"  {role:<10} {username} / {password}")
