"""OpenAI's function tools as request fields: the `tools` a chat offers, its `tool_choice`, and
the tool calls an assistant message of its history made. The queen validates them and the
worker receives them unchanged: it renders them (`chat_prompt`), constrains the calls
(`tool_choice`, `tool_grammar`) and parses them (`tool_parser`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    StrictBool,
    StrictStr,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
)

from rbee.common.request_body import RequestBody, refusal
from rbee.common.validation import (
    MAX_TOOL_ARGUMENTS_CHARS,
    MAX_TOOL_DESCRIPTION_CHARS,
    MAX_TOOLS,
    TOOL_CALL_ID,
    TOOL_NAME,
)

ToolName = Annotated[StrictStr, Field(pattern=TOOL_NAME.pattern)]
ToolCallId = Annotated[StrictStr, Field(pattern=TOOL_CALL_ID.pattern)]


class FunctionSpec(RequestBody):
    """A function a model may call: its name, what it does, its arguments' JSON schema."""

    name: ToolName
    description: Annotated[StrictStr, Field(max_length=MAX_TOOL_DESCRIPTION_CHARS)] | None = None
    parameters: dict[str, Any] | None = None
    strict: StrictBool | None = None
    """Honoured always: a call's arguments are grammar-constrained to `parameters`."""


class ToolSpec(RequestBody):
    """One entry of `tools`."""

    type: Literal["function"]
    function: FunctionSpec


class FunctionName(RequestBody):
    """A function named by `tool_choice`."""

    name: ToolName


class NamedToolChoice(RequestBody):
    """`tool_choice` naming the one function the answer must call."""

    type: Literal["function"]
    function: FunctionName


def _one_tool_choice(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """One refusal for a `tool_choice` that is none of its forms (not one per form tried)."""
    try:
        return handler(value)
    except ValidationError:
        raise refusal('must be "auto", "none", "required" or {"type": "function", "function": '
                      '{"name": …}}') from None


ToolChoice = Annotated[Literal["auto", "none", "required"] | NamedToolChoice, WrapValidator(_one_tool_choice)]


class CalledFunction(RequestBody):
    """The function of a tool call: its name and its arguments as a JSON string."""

    name: ToolName
    arguments: Annotated[StrictStr, Field(max_length=MAX_TOOL_ARGUMENTS_CHARS)]


class ToolCallRef(RequestBody):
    """A tool call an assistant message of the history made."""

    id: ToolCallId
    type: Literal["function"] = "function"
    function: CalledFunction


class ToolParams(RequestBody):
    """A chat's `tools`, `tool_choice` and `parallel_tool_calls`, checked against each other."""

    tools: Annotated[list[ToolSpec], Field(max_length=MAX_TOOLS)] | None = None
    tool_choice: ToolChoice | None = None
    """None: `auto` when tools are offered, else `none` (OpenAI's defaults)."""
    parallel_tool_calls: StrictBool = True
    functions: Any = None
    """OpenAI's deprecated form of `tools`: refused, naming its replacement."""
    function_call: Any = None
    """OpenAI's deprecated form of `tool_choice`: refused, naming its replacement."""

    @field_validator("functions", "function_call")
    @classmethod
    def _deprecated(cls, value: Any, info: ValidationInfo) -> None:
        if value is not None:
            replacement = "tools" if info.field_name == "functions" else "tool_choice"
            raise refusal(f"is OpenAI's deprecated form of '{replacement}', which rbee takes instead")
        return None

    @field_validator("tools")
    @classmethod
    def _distinct_names(cls, tools: list[ToolSpec] | None) -> list[ToolSpec] | None:
        names = [tool.function.name for tool in tools or ()]
        if len(set(names)) != len(names):
            raise refusal("must not name a function twice")
        return tools

    @field_validator("tool_choice")
    @classmethod
    def _among_tools(cls, choice: ToolChoice | None, info: ValidationInfo) -> ToolChoice | None:
        names = {tool.function.name for tool in info.data.get("tools") or ()}
        if choice == "required" and not names:
            raise refusal("may be required only when 'tools' offers a function")
        if isinstance(choice, NamedToolChoice) and choice.function.name not in names:
            raise refusal("must name a function of 'tools'")
        return choice

    @property
    def tool_mode(self) -> str:
        """`none`, `auto`, `required` or `named` (the effective choice)."""
        if not self.tools or self.tool_choice == "none":
            return "none"
        if isinstance(self.tool_choice, NamedToolChoice):
            return "named"
        return self.tool_choice or "auto"

    def tool_wire(self) -> dict[str, Any]:
        """The tool fields alone, as JSON for the worker (none when no tool is offered)."""
        if not self.tools:
            return {}
        fields = {"tools", "tool_choice", "parallel_tool_calls"}
        return self.model_dump(mode="json", include=fields, exclude_none=True)
