from .cli import deploy_app

deploy_app()
