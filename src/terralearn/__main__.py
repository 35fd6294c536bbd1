from terralearn.cli.app import app

app(prog_name="terralearn")
