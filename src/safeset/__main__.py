from safeset.cli.main import app

app(prog_name="safeset")
