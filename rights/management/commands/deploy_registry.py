"""Deploy the Registry contract from the committed artifact with the platform's signer, on the chain
at CHAIN_RPC_URL (or the embedded one), and print the address to put in CHAIN_CONTRACT. With
`--check` it deploys nothing and prints the chain and the registry anchors go to there (after a
development chain's reset, the replacement the batcher deployed)."""
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from rights import chain


class Command(BaseCommand):
    help = "Deploy rights/contracts/Registry.json and print the address for CHAIN_CONTRACT."

    def add_arguments(self, parser):
        parser.add_argument("--force", action="store_true", help="deploy even if CHAIN_CONTRACT is set and there")
        parser.add_argument("--check", action="store_true",
                            help="deploy nothing: print the chain and the registry in use on it")

    def handle(self, *args, force=False, check=False, **options):
        try:
            w3 = chain.chain_client()
            with chain.chain_call():
                chain_id = w3.eth.chain_id
            genesis = chain.chain_genesis_hash(w3)
            in_use = chain.registry_address_in_use(w3)
            with chain.chain_call():
                present = bool(in_use) and bool(bytes(w3.eth.get_code(in_use)))
            kind = "a development chain" if chain.chain_is_development(chain_id) else "not a development chain"
            self.stdout.write(f"chain {chain_id} ({kind}), genesis {genesis}")
            if check:
                if not present:
                    raise CommandError(f"no registry on chain {chain_id}" + (f" at {in_use}" if in_use else ""))
                self.stdout.write(f"CHAIN_CONTRACT={in_use}")
                return
            if getattr(settings, "CHAIN_CONTRACT", "") and present and not force:
                raise CommandError(f"CHAIN_CONTRACT is already set ({settings.CHAIN_CONTRACT}) and the registry is at "
                                   f"{in_use}; use --force to deploy another")
            if getattr(settings, "CHAIN_CONTRACT", "") and not present:
                self.stdout.write(f"no contract at {in_use} on this chain (was it reset?): deploying a new one")
            address = chain.registry_deploy(w3=w3)
        except chain.ChainError as exc:
            raise CommandError(f"{exc.code}: {exc}") from exc
        self.stdout.write(f"Registry deployed on chain {chain_id} at {address} by {chain.chain_signer().address}")
        self.stdout.write(f"CHAIN_CONTRACT={address}")
