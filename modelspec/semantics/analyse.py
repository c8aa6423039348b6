"""Parsed files → Program: collect declarations, elaborate every model that
can be built from its defaults, every variant, gan and train block."""

from __future__ import annotations

from typing import Any

from modelspec.diagnostics import CompileError, Diagnostic, Label, error, suggestion
from modelspec.ir.graph import Gan, Model, Program
from modelspec.ir.types import is_float
from modelspec.semantics import constants as C
from modelspec.semantics.elaborate import Elaborator
from modelspec.semantics.loader import Sources
from modelspec.semantics.values import CallValue, Ref, describe, spec_literal
from modelspec.syntax import ast


def collect_decls(sources: Sources, registry, diagnostics: list[Diagnostic]) -> dict[str, ast.Decl]:
    decls: dict[str, ast.Decl] = {}
    for module in sources.modules:
        for use in module.uses:
            if use.plugin not in registry.plugins:
                why = registry.why_missing(use.plugin)
                third_party = [
                    name
                    for plugin, info in registry.info.items()
                    if not info.builtin and info.loaded
                    for name in (plugin, info.distribution)
                    if name
                ]
                diagnostics.append(
                    error(
                        "E0104",
                        f"this spec needs the plugin `{use.plugin}`, which is "
                        + (f"installed but {why}" if why else "not installed"),
                        use.span,
                        "required here",
                        help=None
                        if why
                        else suggestion(use.plugin, third_party)
                        or registry.hint(plugin=use.plugin)
                        or f"install the package that provides it (`pip install {use.plugin}`?)",
                    )
                )
        for decl in module.decls:
            if decl.name in decls:
                first = decls[decl.name]
                diagnostics.append(
                    error(
                        "E0103",
                        f"`{decl.name}` is declared twice",
                        decl.name_span,
                        "declared again here",
                        secondary=[Label(first.name_span, "first declared here")],
                        help="rename one of them",
                    )
                )
                continue
            if isinstance(decl, ast.ModelDecl | ast.Variant) and registry.op(decl.name):
                diagnostics.append(
                    error(
                        "E0103",
                        f"`{decl.name}` is already the name of an op",
                        decl.name_span,
                        "declared here",
                        notes=[f"the op `{decl.name}` comes from `{registry.op_owner.get(decl.name, '?')}`"],
                        help="rename the declaration",
                    )
                )
                continue
            decls[decl.name] = decl
    return decls


class Analyser:
    def __init__(self, sources: Sources, registry):
        self.sources = sources
        self.registry = registry
        self.diagnostics: list[Diagnostic] = list(sources.diagnostics)
        self.decls = collect_decls(sources, registry, self.diagnostics)
        self.elaborator = Elaborator(self.decls, registry, sources.sources)
        self.program = Program(files=list(sources.sources.texts))
        self.root_names = {d.name for m in sources.modules if m.file == sources.root for d in m.decls}
        self.failed_models: set[str] = set()  # reported already; what depends on them is not checked
        self.failed_variants: set[str] = set()  # variants whose arguments failed (reported already)
        self.building_variants: set[str] = set()  # variants being built: a chain back to one is a cycle

    def run(self) -> Program:
        for decl in self.decls.values():
            try:
                if isinstance(decl, ast.ModelDecl) and decl.kind == "model":
                    if all(p.default is not None for p in decl.params):
                        self.build_model(decl, decl.name, {}, {}, decl.name_span)
                elif isinstance(decl, ast.Variant):
                    self.build_variant(decl)
            except CompileError as exc:
                self.diagnostics.extend(exc.diagnostics)
        for decl in self.decls.values():
            try:
                if isinstance(decl, ast.Gan):
                    self.build_gan(decl)
                elif isinstance(decl, ast.Train):
                    self.build_train(decl)
            except CompileError as exc:
                self.diagnostics.extend(exc.diagnostics)
        self.diagnostics.extend(self.elaborator.diagnostics)
        self.resolve_unelaborated()
        self.diagnostics = self.without_cascades(self.diagnostics)
        return self.program

    def without_cascades(self, diagnostics: list[Diagnostic]) -> list[Diagnostic]:
        """One mistake, one diagnostic: when an import or plugin is missing, names
        it would have provided are not reported again as unknown; then source order."""
        missing_source = any(d.code in ("E0101", "E0104", "E0102") for d in diagnostics)
        if missing_source:
            diagnostics = [d for d in diagnostics if d.code not in ("E0201", "E0202")]
        order = {file: i for i, file in enumerate(self.sources.sources.texts)}

        def position(d: Diagnostic):
            span = d.span
            if span is None:
                return (-1, 0, 0)
            return (order.get(span.file, len(order)), span.line, span.column)

        return sorted(diagnostics, key=position)

    def resolve_unelaborated(self) -> None:
        """Check the names of blocks and models that nothing elaborated."""
        from modelspec.semantics.resolve import resolve_names

        elaborated = {key[0] for key in self.elaborator._block_cache} | {m.base for m in self.program.models.values()}
        callables = set(self.registry.ops) | {n for n, d in self.decls.items() if isinstance(d, ast.ModelDecl)}
        for decl in self.decls.values():
            if isinstance(decl, ast.ModelDecl) and decl.name not in elaborated:
                self.diagnostics.extend(resolve_names(decl, callables, self.registry.hint))

    # ---- models ------------------------------------------------------------------

    def build_model(self, decl: ast.ModelDecl, name: str, positional, keywords, span) -> Model:
        if name in self.program.models:
            return self.program.models[name]
        env = self.elaborator.bind_params(decl, positional, keywords, span, "model")
        before = self.elaborator.reported
        graph = self.elaborator.elaborate_model(decl, env, name)
        if self.elaborator.reported > before:
            self.failed_models.add(name)
        model = Model(
            name=name,
            base=decl.name,
            hyperparameters={k: _json(v) for k, v in env.items()},
            graph=graph,
            span=decl.name_span,
        )
        self.program.models[name] = model
        return model

    def build_variant(self, decl: ast.Variant) -> Model:
        """`model Wide = MLP(hidden=512)`: the model with other arguments. A variant of a variant
        (`model Tiny = GPT3(d=64)`, `GPT3 = GPT2(...)`) takes its base's arguments, overridden by its own,
        over the model's defaults."""
        if decl.name in self.program.models:
            return self.program.models[decl.name]
        if decl.name in self.failed_variants:
            raise CompileError([])  # reported already
        if decl.name in self.building_variants:
            raise CompileError(
                error(
                    "E0315",
                    f"variant `{decl.name}` is based on itself",
                    decl.base_span,
                    "the variant itself" if decl.base == decl.name else f"`{decl.base}` is based on `{decl.name}`",
                    help="base a variant on a model, or on a variant of one",
                )
            )
        self.building_variants.add(decl.name)
        try:
            model = self._build_variant(decl)
        except CompileError:
            self.failed_variants.add(decl.name)
            raise
        finally:
            self.building_variants.discard(decl.name)
        model.span = decl.name_span  # the variant's own declaration
        return model

    def _build_variant(self, decl: ast.Variant) -> Model:
        base = self.decls.get(decl.base)
        if isinstance(base, ast.Variant):
            try:
                self.build_variant(base)
            except CompileError as exc:
                if not exc.diagnostics:
                    raise
                # The base variant's mistakes are reported where it is declared; this one is not checked.
                self.diagnostics.extend(exc.diagnostics)
                self.failed_variants.add(base.name)
                raise CompileError([]) from None
            model_decl, inherited = self.variant_arguments(base)
            positional, keywords = self.arguments(decl)
            own = self.by_name(model_decl, positional, keywords)
            return self.build_model(model_decl, decl.name, [], {**inherited, **own}, decl.span)
        if not isinstance(base, ast.ModelDecl) or base.kind != "model":
            raise CompileError(
                error(
                    "E0202",
                    f"`{decl.base}` is not a model",
                    decl.base_span,
                    "a variant needs a model here",
                    help=suggestion(decl.base, [n for n, d in self.decls.items() if _is_model(d) and n != decl.base])
                    or (f"`{decl.base}` is a block; a variant is of a model" if base is not None else None),
                )
            )
        positional, keywords = self.arguments(decl)
        return self.build_model(base, decl.name, positional, keywords, decl.span)

    def arguments(self, decl: ast.Variant) -> tuple[list, dict]:
        """A variant's own arguments: (value, span) by position and by name."""
        positional, keywords = [], {}
        for arg in decl.args:
            if isinstance(arg, ast.KeywordArg):
                if arg.name in keywords:
                    raise CompileError(error("E0206", f"argument `{arg.name}` is given twice", arg.name_span, "again"))
                keywords[arg.name] = (self.const(arg.value), arg.span)
            elif isinstance(arg, ast.PositionalArg):
                positional.append((self.const(arg.value), arg.span))
            else:
                raise CompileError(error("E0307", "`in -> out` has no meaning for a model", arg.span, "here"))
        return positional, keywords

    def variant_arguments(self, decl: ast.Variant) -> tuple[ast.ModelDecl, dict]:
        """The model a variant (built already) is of, and all its arguments by name, inherited ones included."""
        base = self.decls[decl.base]
        inherited: dict = {}
        if isinstance(base, ast.Variant):
            base, inherited = self.variant_arguments(base)
        positional, keywords = self.arguments(decl)
        return base, {**inherited, **self.by_name(base, positional, keywords)}

    def by_name(self, model: ast.ModelDecl, positional: list, keywords: dict) -> dict:
        """Arguments by position given the names of the parameters they fill (the model checks the names)."""
        if len(positional) > len(model.params):
            raise CompileError(
                error(
                    "E0205",
                    f"`{model.name}` takes {len(model.params)} positional argument(s) but {len(positional)} were given",
                    positional[len(model.params)][1],
                    "one too many",
                )
            )
        named = {param.name: value for param, value in zip(model.params, positional)}
        for key, (value, span) in keywords.items():
            if key in named:
                raise CompileError(
                    error("E0206", f"argument `{key}` is given twice", span, "given again here (also by position)")
                )
            named[key] = (value, span)
        return named

    def const(self, expr: ast.Expr) -> Any:
        return C.evaluate_setting(expr, {})

    def resolve_model(self, value: Any, span=None) -> Model:
        """A model named in a gan or train block: `MLP`, `MLP()` or `MLP(hidden=64)`.

        A model that failed to check raises CompileError with no diagnostics:
        its mistakes are reported already, and what uses it is not checked."""
        model = self._resolve_model(value, span)
        if model.name in self.failed_models:
            raise CompileError([])
        return model

    def _resolve_model(self, value: Any, span=None) -> Model:
        if isinstance(value, Ref):
            name, span, args, kwargs, arg_spans, kwarg_spans = value.name, value.span, (), {}, (), {}
        elif isinstance(value, CallValue):
            name, span = value.name, value.name_span
            args, kwargs, arg_spans, kwarg_spans = value.args, value.kwargs, value.arg_spans, value.kwarg_spans
        else:
            raise CompileError(error("E0402", f"expected a model, got {describe(value)}", span, "not a model"))
        decl = self.decls.get(name)
        if isinstance(decl, ast.Variant):
            if args or kwargs:
                raise CompileError(
                    error("E0205", f"`{name}` is a variant; give its arguments in its declaration", span, "here")
                )
            if name not in self.program.models:
                self.build_variant(decl)
            return self.program.models[name]
        if not isinstance(decl, ast.ModelDecl) or decl.kind != "model":
            models = [n for n, d in self.decls.items() if isinstance(d, ast.Variant | ast.ModelDecl) and _is_model(d)]
            raise CompileError(
                error("E0407", f"cannot find model `{name}`", span, "not a model", help=suggestion(name, models))
            )
        positional = list(zip(args, arg_spans))
        keywords = {k: (v, kwarg_spans[k]) for k, v in kwargs.items()}
        label = name
        if positional or keywords:
            parts = [spec_literal(v) for v in args] + [f"{k}={spec_literal(v)}" for k, v in kwargs.items()]
            label = f"{name}({', '.join(parts)})"
        return self.build_model(decl, label, positional, keywords, span)

    # ---- gans ----------------------------------------------------------------------

    def build_gan(self, decl: ast.Gan) -> None:
        roles: dict[str, tuple[Model, ast.GanItem]] = {}
        for item in decl.items:
            if item.role not in ("generator", "discriminator"):
                raise CompileError(
                    error(
                        "E0401",
                        f"a gan has no `{item.role}`",
                        item.role_span,
                        "unknown role",
                        help=suggestion(item.role, ["generator", "discriminator"])
                        or "a gan names a `generator` and a `discriminator`",
                    )
                )
            if item.role in roles:
                raise CompileError(
                    error(
                        "E0408",
                        f"`{item.role}` is given twice",
                        item.role_span,
                        "again",
                        secondary=[Label(roles[item.role][1].role_span, "first here")],
                    )
                )
            roles[item.role] = (self.resolve_model(C.evaluate_setting(item.value, {}), item.value.span), item)
        for role in ("generator", "discriminator"):
            if role not in roles:
                raise CompileError(
                    error("E0403", f"gan `{decl.name}` has no {role}", decl.name_span, f"add `{role} ...`")
                )
        (gen, gen_item), (disc, disc_item) = roles["generator"], roles["discriminator"]
        self.check_gan_types(decl, gen, gen_item, disc, disc_item)
        self.program.gans[decl.name] = Gan(
            name=decl.name, generator=gen.name, discriminator=disc.name, span=decl.name_span
        )

    def check_gan_types(self, decl, gen: Model, gen_item, disc: Model, disc_item) -> None:
        g_out, d_in = gen.graph.output_types, disc.graph.inputs
        if len(g_out) != 1 or len(d_in) != 1:
            raise CompileError(
                error(
                    "E0305",
                    "a gan's generator needs exactly one output and its discriminator exactly one input",
                    decl.name_span,
                    f"generator has {len(g_out)} output(s), discriminator {len(d_in)} input(s)",
                )
            )
        (out_name, out_type), (in_name, in_type) = next(iter(g_out.items())), next(iter(d_in.items()))
        out_span = _output_span(self.decls.get(gen.base), out_name)
        in_span = disc.graph.input_spans.get(in_name)
        same_dtype = out_type.dtype == in_type.dtype or (is_float(out_type.dtype) and in_type.dtype == "float")
        problem = None
        if not same_dtype:
            problem = f"dtype `{out_type.dtype}` vs `{in_type.dtype}`"
        elif out_type.rank != in_type.rank:
            problem = f"rank {out_type.rank} vs {in_type.rank}"
        else:
            for i, (a, b) in enumerate(zip(out_type.shape, in_type.shape)):
                if a.is_const and b.is_const and a != b:
                    problem = f"dimension {i} is {a} from the generator but {b} for the discriminator"
                    break
        if problem is None:
            return
        secondary = []
        if out_span:
            secondary.append(Label(out_span, f"`{gen.name}` emits {out_type}"))
        if in_span:
            secondary.append(Label(in_span, f"`{disc.name}` expects {in_type}"))
        raise CompileError(
            error(
                "E0305",
                f"generator `{gen.name}` emits {out_type} but discriminator `{disc.name}` expects {in_type}",
                disc_item.span,
                problem,
                secondary=secondary,
                help="make the generator's output type equal the discriminator's input type",
            )
        )

    # ---- train ---------------------------------------------------------------------

    def build_train(self, decl: ast.Train) -> None:
        from modelspec.train.config import validate_train

        spec, diagnostics = validate_train(decl, self.registry, self.model_info)
        self.diagnostics.extend(diagnostics)
        if spec is not None:
            self.program.trains[decl.name] = spec

    def model_info(self, value):
        from modelspec.train.config import ModelInfo

        name = value.name
        if name in self.program.gans or isinstance(self.decls.get(name), ast.Gan):
            if name not in self.program.gans:
                self.build_gan(self.decls[name])
            gan = self.program.gans[name]
            roles = {
                "generator": self.model_info(Ref(gan.generator, value.span)),
                "discriminator": self.model_info(Ref(gan.discriminator, value.span)),
            }
            return ModelInfo(name=name, kind="gan", inputs={}, outputs={}, roles=roles)
        if name in self.program.models and isinstance(value, Ref):
            model = self.program.models[name]
            if name in self.failed_models:
                raise CompileError([])  # reported already
        else:
            model = self.resolve_model(value)
        return ModelInfo(
            name=model.name,
            kind="model",
            inputs={k: str(t) for k, t in model.graph.inputs.items()},
            outputs={k: str(t) for k, t in model.graph.output_types.items()},
            roles={},
        )


def _is_model(decl: ast.Decl) -> bool:
    return isinstance(decl, ast.Variant) or (isinstance(decl, ast.ModelDecl) and decl.kind == "model")


def _output_span(decl, name: str):
    if not isinstance(decl, ast.ModelDecl):
        return None
    from modelspec.semantics.elaborate import _walk

    for stmt in _walk(decl.body):
        if isinstance(stmt, ast.Output) and stmt.name == name:
            return stmt.span
    return None


def _json(value: Any) -> Any:
    from modelspec.ir.dims import Dim

    if isinstance(value, Dim):
        return str(value)
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    return value


def analyse(sources: Sources, registry) -> tuple[Program, list[Diagnostic]]:
    analyser = Analyser(sources, registry)
    program = analyser.run()
    return program, analyser.diagnostics
