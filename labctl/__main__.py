"""``labctl`` and ``python -m labctl``: the command line, with a clean exit for a Ctrl-C at start-up.

The command line module imports torch and h5py, which takes a second or two; a Ctrl-C pressed
then arrives before :func:`labctl.cli.main` can handle it, so it is caught here.
"""

import sys


def main() -> int:
    try:
        from .cli import main as cli_main

        return cli_main()
    except KeyboardInterrupt:
        print("labctl: interrupted before the run started; no run file was written", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
