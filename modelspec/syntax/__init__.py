"""Syntax: .mspec text → AST (`parse`)."""

from modelspec.syntax.parser import Comment, ParseResult, comments, decode, parse

__all__ = ["Comment", "ParseResult", "comments", "decode", "parse"]
