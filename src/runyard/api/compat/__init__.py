"""The endpoints of the spec documents, with their exact paths and shapes, over the same services."""
