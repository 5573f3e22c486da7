from kancompress.cli import app

app(prog_name="kancompress")
