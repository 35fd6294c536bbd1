"""The no-code web app (`terralearn ui`): the whole workflow in a browser, on the same stage functions as the CLI."""
