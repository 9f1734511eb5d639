"""The application code: it changes on every commit."""
import six

print("Hello from ordering v1, six", six.__version__)
