from services.common.runtime import run
from services.pricer.app import build

run(build()[1])
