from services.common.runtime import run
from services.planner.app import build

run(build()[1])
