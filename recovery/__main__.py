from recovery.cli import run

run()
