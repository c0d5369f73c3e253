"""Speed measurements of musicgan's hot paths against honest references (`musicgan bench`)."""
