"""`python -m musicgan ...` (what torchrun, sbatch and the launch scripts call)."""

from musicgan.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
