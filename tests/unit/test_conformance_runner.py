"""The conformance runner's per-file timeout: a file holding a test that is slow by design gets
that test's seconds, every other file the default."""

from tools.conformance.__main__ import LONG_RUNNING, FileRun, file_timeout, function_of

SLOW = "test_topic.py::TestServiceBusTopics::test_topic_by_servicebus_client_send_large_messages_w_sleep[pyamqp]"
QUICK = "test_topic.py::TestServiceBusTopics::test_topic_by_queue_client_conn_str_send_basic[pyamqp]"


def test_a_file_with_a_slow_test_gets_its_seconds() -> None:
    seconds, _ = LONG_RUNNING[function_of(SLOW)]
    assert seconds > 420
    assert file_timeout(FileRun("test_topic.py", [QUICK, SLOW]), 420) == seconds


def test_other_files_keep_the_default_and_a_longer_default_wins() -> None:
    assert file_timeout(FileRun("test_topic.py", [QUICK]), 420) == 420
    assert file_timeout(FileRun("test_topic.py", [QUICK, SLOW]), 2000) == 2000


def test_function_of_strips_the_class_and_the_parameters() -> None:
    assert function_of(SLOW) == "test_topic_by_servicebus_client_send_large_messages_w_sleep"
