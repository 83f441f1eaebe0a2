DROP INDEX queue_tokens_written;
