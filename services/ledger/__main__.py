from services.common.runtime import run
from services.ledger.app import build

run(build()[1])
