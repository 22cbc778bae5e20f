"""The instance: its directory (``$DAGD_HOME``) and its configuration file (``dagd.yaml``)."""
