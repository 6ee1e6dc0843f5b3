"""``python -m vqvdm_core`` (and ``torchrun ... -m vqvdm_core``): the ``vqvdm`` command line."""

from vqvdm_core.cli import main

main()
