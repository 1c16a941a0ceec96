from services.common.runtime import run
from services.executor.app import build

run(build()[1])
