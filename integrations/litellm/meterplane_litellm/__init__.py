"""Meterplane for the LiteLLM proxy: budgets and rate limits before a call, usage after.

    litellm_settings:
      callbacks: ["meterplane_litellm.callback"]

with METERPLANE_URL and METERPLANE_API_KEY set. See callback.py for the settings and
docs/litellm.md in the Meterplane repository for the whole story.
"""

from .callback import MeterplaneCallback, Settings
from .mapping import link_batch, map_payload
from .sender import Sender

__all__ = ["MeterplaneCallback", "Settings", "Sender", "callback", "link_batch", "map_payload"]

# The instance config.yaml names. Settings are read from the environment at first use.
callback = MeterplaneCallback()
