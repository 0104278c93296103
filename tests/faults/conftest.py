from tests.faults.support import dedicated_broker  # noqa: F401
from tests.kafka_fixtures import kafka_broker, test_env, worker_factory  # noqa: F401
