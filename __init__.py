"""latent-bias-probe: mechanistic latent-bias probing of clinical language models.

The sub-packages, lowest layer first (each imports only those above it):

- ``latent_bias_probe.configs``: the validated, frozen job configuration and errors;
- ``latent_bias_probe.mfarm``: the fairness scores (pure functions of arrays);
- ``latent_bias_probe.benchmarks``: clinical cases and their 13 rendered variants;
- ``latent_bias_probe.extract``: models, forward runners, the activation cache;
- ``latent_bias_probe.probes``: probes, steering vectors, the value axis, explain;
- ``latent_bias_probe.report``: scoring tables and the HTML/terminal renderers;
- ``latent_bias_probe.pipeline``: the stages that read and write a run directory;
- ``latent_bias_probe.cli``: the ``probe`` command.

Importing the package imports neither torch nor transformers.
"""

from .configs.version import TOOLKIT_VERSION as __version__

__all__ = ["__version__"]
