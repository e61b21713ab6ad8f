"""The ``unet-sdk`` command line: one module per subcommand, dispatched by :mod:`sdk.cli.main`."""
