"""The ``kerastl`` command line: a thin shell over the library."""
