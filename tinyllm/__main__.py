"""`python -m tinyllm` (and `torchrun -m tinyllm`) runs the CLI."""
from tinyllm.cli import main

if __name__ == "__main__":
    main()
