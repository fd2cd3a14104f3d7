"""Deploy the Registry contract from the committed artifact with the platform's signer, on the chain
at CHAIN_RPC_URL (or the embedded one), and print the address to put in CHAIN_CONTRACT."""
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from rights import chain


class Command(BaseCommand):
    help = "Deploy rights/contracts/Registry.json and print the address for CHAIN_CONTRACT."

    def add_arguments(self, parser):
        parser.add_argument("--force", action="store_true", help="deploy even if CHAIN_CONTRACT is set")

    def handle(self, *args, force=False, **options):
        if getattr(settings, "CHAIN_CONTRACT", "") and not force:
            raise CommandError(f"CHAIN_CONTRACT is already set ({settings.CHAIN_CONTRACT}); use --force to deploy another")
        try:
            w3 = chain.chain_client()
            address = chain.registry_deploy(w3=w3)
            chain_id = w3.eth.chain_id
        except chain.ChainError as exc:
            raise CommandError(f"{exc.code}: {exc}") from exc
        self.stdout.write(f"Registry deployed on chain {chain_id} at {address} by {chain.chain_signer().address}")
        self.stdout.write(f"CHAIN_CONTRACT={address}")
