"""`python -m probes.agent --config probe.yaml`: the agent without the `netqos` command."""

import sys

from probes.agent.agent import main

sys.exit(main())
