"""``python -m advgen``: the command line, as torchrun launches it (``torchrun ... -m advgen train``)."""

from advgen.cli import main

if __name__ == "__main__":
    main()
