"""Register the simulator as demo providers in the compose stack, then exit.

The `demo-providers` step of docker-compose.yml runs this once the gateway is
healthy. It reuses deploy/local/demo.py, which `make run` uses for the same job,
with the container network's addresses in place of the local stack's:

- GATEWAY_URL: nginx inside the network (http://nginx:8080).
- SIMULATOR_URL: the simulator as the providers service reaches it.
- ADMIN_EMAIL, ADMIN_PASSWORD: the admin account that auth creates at start.
- OPENAI_API_KEY: when set, OpenAI is registered in place of the simulator.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "local"))

from demo import register_demo_providers  # noqa: E402


@dataclass(frozen=True)
class ComposeStack:
    """The attributes of deploy/local/stack.py's `Stack` that demo.py reads."""

    public_base_url: str
    simulator_url: str
    admin_email: str
    admin_password: str

    def common_env(self) -> dict[str, str]:
        return {"ADMIN_EMAIL": self.admin_email, "ADMIN_PASSWORD": self.admin_password}


def main() -> int:
    missing = [
        name
        for name in ("GATEWAY_URL", "SIMULATOR_URL", "ADMIN_EMAIL", "ADMIN_PASSWORD")
        if not os.environ.get(name)
    ]
    if missing:
        print(
            f"Missing settings: {', '.join(missing)}. Set them in the environment "
            "of the demo-providers step (docker-compose.yml).",
            file=sys.stderr,
        )
        return 2
    stack = ComposeStack(
        public_base_url=os.environ["GATEWAY_URL"].rstrip("/"),
        simulator_url=os.environ["SIMULATOR_URL"].rstrip("/"),
        admin_email=os.environ["ADMIN_EMAIL"],
        admin_password=os.environ["ADMIN_PASSWORD"],
    )
    # demo.py prints each provider it could not register and returns normally.
    # So this step exits 0 even then, and its log names the provider and error.
    register_demo_providers(stack)  # type: ignore[arg-type]
    print(f"Demo provider registration done at {stack.public_base_url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
