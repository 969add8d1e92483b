from coloi.cli import app

app(prog_name="coloi")
