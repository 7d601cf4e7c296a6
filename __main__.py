"""``python -m latent_bias_probe``: the ``probe`` command."""

from .cli import main

if __name__ == "__main__":
    main(prog_name="probe")
