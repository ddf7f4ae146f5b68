# Read by the `flask` command only (not by make serve): the flask CLI is a development tool.
FLASK_APP=responder
RESPONDER_ENV=development
