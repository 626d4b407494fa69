# The guard matters: multiprocessing's spawn re-imports the main module in every child.
if __name__ == "__main__":
    from .cli import main

    raise SystemExit(main())
