"""``python -m sgpt_qdrant.testing DIR``: write a random stand-in model folder (see random_model.main)."""

from .random_model import main

raise SystemExit(main())
