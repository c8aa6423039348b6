"""The error codes of modelspec, one entry each: what it means, a spec that
triggers it, and how to fix it.

`docs/errors.md` is generated from this table and must not be edited by hand:

    python -m modelspec.diagnostics.codes > docs/errors.md

Codes are grouped by stage: E00xx reading and parsing a file, E01xx imports,
plugins and declarations, E02xx names and arguments, E03xx types, shapes and
values, E04xx `train` and `gan` blocks, E05xx command-line input, E06xx a
backend (`mspec compile`, `modelspec.build`); E9999 is a bug in modelspec.
`specs/broken/` holds a spec for every code `mspec check` can show for a spec,
and `specs/broken/compile/` one for every code only `mspec compile` shows
(tests/test_broken_specs.py keeps both in step).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Code:
    code: str
    title: str  # one short line, lowercase
    explanation: str  # a paragraph
    example: str  # a short .mspec snippet that triggers it; a command line (`$ ...`) where a spec cannot
    fix: str  # one sentence

    @property
    def example_is_command(self) -> bool:
        return self.example.startswith("$ ")


_ALL = [
    # ---- E00xx: reading and parsing --------------------------------------------------
    Code(
        "E0001",
        "unexpected token or end of file",
        "The parser met a token that cannot come next, or the file ended inside an unfinished declaration "
        "(usually a `{` without its `}`). The note lists what the grammar allows at that point. Python habits "
        "are common causes: `kernel: 3` for `kernel=3`, angle brackets for a tensor type, a missing `:` after "
        "an input's name.",
        "model MLP() {\n    input image: float<B, 784>\n    output logits = image |> linear(10)\n}",
        "Write the construct the note expects at the marked place, or close the open `{`.",
    ),
    Code(
        "E0002",
        "unexpected character",
        "A character that starts no token of the language: a `;` at the end of a statement, a single-quoted "
        "string, `@`, or a NUL byte (the file is probably binary or was damaged).",
        "import 'std/transformer.mspec'",
        "Remove the character; strings take double quotes.",
    ),
    Code(
        "E0003",
        "malformed string",
        'A string has no closing `"` before the end of its line, or uses an escape other than `\\n`, `\\t`, '
        '`\\r`, `\\0`, `\\\\` and `\\"` (a Windows path such as `"..\\common\\blocks.mspec"` does).',
        'import "std/transformer.mspec\n\nmodel Net() {\n    input x: float[B, 10]\n    output y = x |> linear(10)\n}',
        "Close the string on the same line and write paths with `/`.",
    ),
    Code(
        "E0004",
        "file is not valid UTF-8",
        "Spec files are read as UTF-8. The marked byte cannot start or continue a UTF-8 character, which "
        "usually means the file was saved in Latin-1 or another legacy encoding (a `µ` or `×` in a comment is "
        "enough). The example is a file whose comment holds the Latin-1 byte 0xb5.",
        "$ printf '# step \\xb5s\\n' > latin1.mspec && mspec check latin1.mspec",
        "Save the file as UTF-8.",
    ),
    Code(
        "E0005",
        "cannot read a file",
        "A file given on the command line (or imported) does not exist, is a folder, or cannot be read. "
        "The diagnostic has no source location: nothing in a spec is wrong.",
        "$ mspec check specs/nope.mspec",
        "Check the path and the file's permissions.",
    ),
    Code(
        "E0006",
        "nesting is too deep",
        "An expression nests more than 200 levels deep. No hand-written spec comes near this; generated specs "
        "that write layers as nested calls instead of a `|>` chain can. The limit keeps later stages, which "
        "recurse over expressions, safe.",
        "model Net() {\n    input x: float[B, 10]\n    y = relu(relu(relu(  # ... 201 levels ...\n"
        "    output z = y |> linear(10)\n}",
        "Split the expression into named bindings, or write the chain with `|>`.",
    ),
    Code(
        "E0007",
        "number literal is out of range",
        "An integer literal above 2**128 (no size of anything is that large), or a float literal that is not "
        "finite, such as `1e400`. Often two numbers pasted together.",
        "model LM(vocab: int = 5025750257502575025750257502575025750257502575025750257) {\n"
        "    input tokens: int64[B, T]\n    output logits = embedding(tokens, vocab, 64) |> linear(vocab)\n}",
        "Write the number you meant.",
    ),
    # ---- E01xx: imports, plugins, declarations -------------------------------------
    Code(
        "E0101",
        "cannot find an imported file",
        "An `import` names a file that does not exist. Imports are relative to the importing file's folder; "
        "`std/...` also finds the standard library shipped with modelspec (`std/transformer.mspec`).",
        'import "std/transformers.mspec"\n\nmodel Tiny() {\n    input tokens: int64[B, T]\n'
        "    output y = embedding(tokens, 1000, 64) |> GPTBlock(4)\n}",
        'Fix the path relative to the importing file, or import the standard library as `"std/..."`.',
    ),
    Code(
        "E0102",
        "import cycle",
        "Two or more files import each other, directly or through others. The error points at the import that "
        "closes the cycle and the note lists the files in it. The example is two files, `cycle_a.mspec` and "
        "`cycle_b.mspec`.",
        '# cycle_a.mspec\nimport "cycle_b.mspec"\n\n# cycle_b.mspec\nimport "cycle_a.mspec"',
        "Move the declarations both files need into a third file that both import.",
    ),
    Code(
        "E0103",
        "a name is declared twice",
        "Two models, blocks, gans or train blocks of a program (a file and everything it imports) have the "
        "same name, or a model takes the name of an op such as `linear`. Calls would be ambiguous, so the "
        "second declaration is refused.",
        "block Stage(out: int) {\n    input x: float[B, C, H, W]\n    output y = x |> conv2d(out, kernel=3)\n}\n\n"
        "block Stage(out: int) {\n    input x: float[B, C, H, W]\n    output y = x |> conv2d(out, kernel=3) "
        "|> maxpool(2)\n}",
        "Rename one of the declarations.",
    ),
    Code(
        "E0104",
        "a required plugin is not installed",
        'A `use "PLUGIN"` line names a plugin that is not installed in this environment, so the ops and '
        "components it provides are missing.",
        'use "vision-zoo"\n\nmodel Net() {\n    input image: float[B, 3, 224, 224]\n'
        "    output y = image |> swin_block(96, heads=3)\n}",
        "Install the plugin (`pip install PLUGIN`), or remove the `use` line and what needs it.",
    ),
    Code(
        "E0105",
        "a plugin's op failed",
        "An op that a plugin registered raised an exception, or returned something that is not a tensor type, "
        "parameter list or cost, while checking the call at the marked line. This is a fault in the plugin, "
        "not in the spec: the message names the plugin, its package and version, and what went wrong, so it "
        "can be reported to the plugin's authors. A built-in op failing this way is a bug in modelspec.",
        "$ mspec check net.mspec   # with a plugin whose shape rule raises",
        "Report it to the plugin's authors; until it is fixed, avoid the call or pin a working version.",
    ),
    # ---- E02xx: names and arguments -----------------------------------------------
    Code(
        "E0201",
        "cannot find a name",
        "A name is used that nothing in scope binds: a misspelt variable, a variable of another model or "
        "block, an output a block does not have (`.name`), or a `tie=` target that is not a layer declared "
        "earlier with `name=`.",
        "model MLP() {\n    input image: float[B, 784]\n    hidden = image |> linear(128) |> relu\n"
        "    output logits = hiden |> linear(10)\n}",
        "Use a name that is bound before this point; the help lists close matches.",
    ),
    Code(
        "E0202",
        "unknown layer, dtype or type",
        "A call names no op, block or model (`Conv2d` is PyTorch's spelling; the op is `conv2d`), a tensor "
        "type has an unknown dtype, a parameter has a type other than int, float, bool, str, tuple and list, "
        "or a variant (`model Wide = Stage(...)`) is based on something that is not a model.",
        "model Net() {\n    input image: float[B, 3, 32, 32]\n    output y = image |> Conv2d(16, kernel=3)\n}",
        "Use a known name (the help lists close matches), or import or `use` what provides it.",
    ),
    Code(
        "E0203",
        "unknown argument",
        "A keyword argument names nothing the op, block or model takes (`kernel_size=` for `conv2d`'s "
        "`kernel=`), or `in -> out` is given to something that does not declare its sizes that way.",
        "model Net() {\n    input x: float[B, 20]\n    output y = x |> leaky_relu(slope=0.2)\n}",
        "Use one of the argument names the help lists.",
    ),
    Code(
        "E0204",
        "missing argument",
        "An op, block, model or component is called without a value for an argument that has no default: "
        "`conv2d` without `kernel`, a block parameter declared without `= default`, a loss without its "
        "inputs.",
        "block Stage(out: int, convs: int) {\n    input x: float[B, C, H, W]\n"
        "    output y = x |> conv2d(out, kernel=3)\n}\n\nmodel Net() {\n    input image: float[B, 3, 32, 32]\n"
        "    output y = Stage(image, 64)\n}",
        "Give the argument.",
    ),
    Code(
        "E0205",
        "wrong number or order of arguments",
        "More positional arguments than the callee takes (PyTorch's `nn.Linear(784, 128)` habit; modelspec "
        "writes `linear(784 -> 128)` or `linear(128)`), a positional argument after a keyword argument, a "
        "tensor argument after non-tensor ones, or the wrong number of tensor inputs.",
        "model MLP() {\n    input x: float[B, 784]\n    output y = linear(x, 784, 128)\n}",
        "Name the extra arguments, put positional arguments first, or write sizes as `in -> out`.",
    ),
    Code(
        "E0206",
        "argument given twice",
        "The same argument is given twice in one call, by keyword twice or by position and by keyword.",
        "model Net() {\n    input image: float[B, 3, 32, 32]\n"
        "    output y = image |> conv2d(16, kernel=3, stride=2, stride=1)\n}",
        "Give each argument once.",
    ),
    Code(
        "E0207",
        "argument of the wrong type",
        "An argument's value has the wrong type: a string for a bool, a float for an int parameter, a single "
        "number where a tuple is needed (`betas=0.9`).",
        'model Net() {\n    input x: float[B, 20]\n    output y = x |> linear(10, bias="no")\n}',
        "Give a value of the type the label names.",
    ),
    Code(
        "E0208",
        "argument value out of range",
        "An argument has the right type but a value the callee refuses: a dropout probability of 1.5, a "
        "kernel of 0, a negative learning rate, `epochs 0`, a negative dimension in a tensor type.",
        "model Net() {\n    input x: float[B, 20]\n    output y = x |> linear(10) |> dropout(1.5)\n}",
        "Give a value in the range the message states.",
    ),
    Code(
        "E0209",
        "name used twice or not a valid name",
        "Within one model or block, an input or output is declared twice, `name=` gives a layer a name that "
        "another layer already has, `name=` is not a plain identifier, a `repeat` body tries to change a "
        "constant defined outside it, a `repeat`'s index has the name of a variable in scope, or a variable, "
        "input or parameter is named `true` or `false` (which read as the literals).",
        "model Net() {\n    input x: float[B, 20]\n    h = x |> linear(64, name=fc) |> relu\n"
        "    output y = h |> linear(10, name=fc)\n}",
        "Pick another name.",
    ),
    # ---- E03xx: types, shapes and values --------------------------------------------
    Code(
        "E0301",
        "shapes do not fit",
        "An op's shape rule refuses its input: a layer declares `in -> out` sizes that the input does not "
        "have, two tensors cannot be broadcast together, a reshape changes the number of elements, a tied "
        "weight has another shape. The primary label marks the argument at fault when there is one; the "
        "secondary labels and notes give the input's type.",
        "model CNN() {\n    input image: float[B, 3, 32, 32]\n"
        "    x = image |> conv2d(64, kernel=3, padding=1) |> maxpool(2) |> maxpool(2)\n"
        "    output logits = x |> flatten |> linear(64*6*6 -> 128)\n}",
        "Make the declared size match the input (or drop it and let it be inferred: `linear(128)`).",
    ),
    Code(
        "E0302",
        "wrong dtype",
        "An op needs another element type: `embedding` needs integer token ids, most layers need floating "
        "point, and binary operations cannot mix dtypes that have no common type.",
        "model LM() {\n    input tokens: float[B, T]\n    output x = embedding(tokens, 1000, 64)\n}",
        "Declare the input with the dtype the op needs (`int64[B, T]` for token ids).",
    ),
    Code(
        "E0303",
        "wrong rank or dimension index",
        "An op needs an input of another rank (`conv2d` needs [B, C, H, W]; after `flatten` there are two "
        "dimensions), or a `dim=` argument is out of range for the input's rank.",
        "model Net() {\n    input image: float[B, 3, 32, 32]\n    x = image |> flatten\n"
        "    output y = x |> conv2d(16, kernel=3)\n}",
        "Reshape the input to the layout the op expects, or use a dimension index in the range given.",
    ),
    Code(
        "E0304",
        "block input does not match its declared type",
        "A tensor passed to a block does not fit the block's `input` declaration: another dtype, another rank, "
        "or a size that differs from one the declaration fixes or has already bound.",
        'import "std/transformer.mspec"\n\nmodel Head() {\n    input features: float[B, 512]\n'
        "    output y = Mlp(features, 2048)\n}",
        "Pass a tensor of the declared type, or change the block's input declaration.",
    ),
    Code(
        "E0305",
        "gan generator does not fit its discriminator",
        "A gan feeds its generator's one output to its discriminator's one input, so their types must be "
        "equal: same dtype, rank and sizes. Also reported when the generator has more than one output or the "
        "discriminator more than one input.",
        "model G() {\n    input z: float[B, 100]\n    output image = z |> linear(256) |> reshape(B, 1, 16, 16)\n}\n\n"
        "model D() {\n    input image: float[B, 3, 16, 16]\n    output p = image |> flatten |> linear(1) |> sigmoid\n}"
        "\n\ngan Pair {\n    generator      G()\n    discriminator  D()\n}",
        "Make the generator's output type equal the discriminator's input type.",
    ),
    Code(
        "E0307",
        "value of the wrong kind",
        "A value is used where another kind is needed: a layer where a value is expected (`h = relu` instead "
        "of `h = x |> relu`), a number as a layer, a constant as an output, a constant or a block's several "
        "outputs piped into a layer (`3 |> relu`), an operator that tensors do not have (`**`), a string in "
        "arithmetic.",
        "model Net() {\n    input x: float[B, 20]\n    h = relu\n    output y = x |> linear(10)\n}",
        "Apply layers to tensors (`x |> relu`) and use values where values are expected.",
    ),
    Code(
        "E0308",
        "assertion failed",
        "An `assert` in a model or block is false for the arguments it was built with; its message (or its "
        "condition) is shown with the values of the names in it. `mspec summary` reports the same code when "
        "the sizes given with `--input` break an assertion.",
        "model PatchEmbed(size: int = 224, patch: int = 15) {\n    input image: float[B, 3, 224, 224]\n"
        '    assert size % patch == 0, "the image size must be a multiple of the patch size"\n'
        "    output y = image |> conv2d(768, kernel=patch, stride=patch)\n}",
        "Change the arguments so that the assertion holds.",
    ),
    Code(
        "E0310",
        "depends on a size that is not known yet",
        "Something that must be decided while the model is built depends on a symbolic size (such as `B` or "
        "`T`, known only when inputs arrive): a `repeat` count, an `if` condition, or an `assert` that "
        "combines sizes in a way that cannot be checked later.",
        "model Net() {\n    input x: float[B, T, 64]\n    repeat T {\n        x = x |> linear(64) |> relu\n    }\n"
        "    output y = x\n}",
        "Use a number or a model parameter here.",
    ),
    Code(
        "E0311",
        "arithmetic error",
        "Constant arithmetic divides by zero, overflows (results beyond 2**256 are refused), or produces a "
        "value that is not a number.",
        "model Attention(d: int = 64, heads: int = 0) {\n    input x: float[B, T, 64]\n"
        "    output y = x |> linear(d // heads)\n}",
        "Change the values so the arithmetic is defined.",
    ),
    Code(
        "E0312",
        "invalid `repeat` count",
        "A `repeat` count is negative, or the body would have to be elaborated separately for more than 4096 "
        "iterations (iterations that keep their types are counted, not unrolled).",
        "model Deep(layers: int = 1) {\n    input x: float[B, 64]\n    repeat layers - 2 {\n"
        "        x = x |> linear(64) |> relu\n    }\n    output y = x\n}",
        "Make the count zero or more.",
    ),
    Code(
        "E0314",
        "model or block has no output",
        "A model or block declares no `output`, so nothing it computes can be used.",
        "model MLP() {\n    input x: float[B, 784]\n    logits = x |> linear(10)\n}",
        "Declare what it produces: `output logits = ...`.",
    ),
    Code(
        "E0315",
        "block calls itself",
        "A block calls itself, directly or through other blocks, or blocks are nested more than 64 levels "
        "deep. A block cannot contain itself; depth comes from `repeat`. The same code marks a variant based "
        "on itself through other variants (`model A = B()` and `model B = A()`).",
        "block Layer(d: int) {\n    input x: float[B, D]\n    output y = x |> linear(d) |> relu |> Layer(d)\n}\n\n"
        "model Net() {\n    input x: float[B, 64]\n    output y = x |> Layer(64)\n}",
        "Stack the block with `repeat` instead of calling it from itself.",
    ),
    # ---- E04xx: train and gan blocks ------------------------------------------------
    Code(
        "E0401",
        "unknown setting or role",
        "A `train` block has a key that is not a setting (`optimiser`, `batch_size`: the batch size is an "
        "argument of the dataset), or a `gan` block has a role other than `generator` and `discriminator` "
        "(such as `critic`).",
        "model MLP() {\n    input image: float[B, 784]\n    output logits = image |> linear(10)\n}\n\n"
        "train t {\n    model MLP\n    data digits()\n    batch_size 64\n    loss cross_entropy(logits, label)\n"
        "    optimizer sgd(lr=0.1)\n    epochs 10\n}",
        "Use one of the settings (or roles) that the help and notes list.",
    ),
    Code(
        "E0402",
        "setting value of the wrong kind",
        "A setting's value does not have the form the setting takes: `epochs 2.5`, a number as an optimizer, "
        "an unknown precision, `role: value` pairs for a setting that takes one value, a model argument that "
        "is not a constant, or something other than a model in a gan.",
        "model MLP() {\n    input image: float[B, 784]\n    output logits = image |> linear(10)\n}\n\n"
        "train t {\n    model MLP\n    data digits(batch=64)\n    loss cross_entropy(logits, label)\n"
        "    optimizer sgd(lr=0.1)\n    epochs 2.5\n}",
        "Write the value in the form the message gives.",
    ),
    Code(
        "E0403",
        "required setting or role missing",
        "A `train` block lacks `model`, `data`, `loss` or `optimizer`, or both `epochs` and `steps`; a "
        "per-role optimizer or schedule lacks a role of the gan; or a `gan` block lacks its generator or "
        "discriminator.",
        "model MLP() {\n    input image: float[B, 784]\n    output logits = image |> linear(10)\n}\n\n"
        "train t {\n    model MLP\n    data digits(batch=64)\n    loss cross_entropy(logits, label)\n"
        "    epochs 10\n}",
        "Add the missing setting or role.",
    ),
    Code(
        "E0404",
        "unknown component",
        "A setting names an optimizer, schedule, loss, metric, dataset, regularizer or distributed strategy "
        "that no installed plugin registers (`Adam` is PyTorch's class; the optimizer is `adam`).",
        "model MLP() {\n    input image: float[B, 784]\n    output logits = image |> linear(10)\n}\n\n"
        "train t {\n    model MLP\n    data digits(batch=64)\n    loss cross_entropy(logits, label)\n"
        "    optimizer Adam(lr=1e-3)\n    epochs 10\n}",
        "Use one of the names the note lists, or install and `use` the plugin that provides it.",
    ),
    Code(
        "E0405",
        "unknown argument of a component",
        "A keyword argument is not one the component takes (`learning_rate=` for `lr=`). A misspelt required "
        "argument is reported once, here, not also as missing.",
        "model MLP() {\n    input image: float[B, 784]\n    output logits = image |> linear(10)\n}\n\n"
        "train t {\n    model MLP\n    data digits(batch=64)\n    loss cross_entropy(logits, label)\n"
        "    optimizer adam(learning_rate=1e-3)\n    epochs 10\n}",
        "Use one of the arguments the note lists.",
    ),
    Code(
        "E0406",
        "conflicting settings",
        "Settings that cannot hold together: `epochs` and `steps` both set, per-role optimizers for a model "
        "that is not a gan, inputs given to a gan regime's loss, `samples` without a gan, `keep` without "
        "`checkpoint`, `reinit` without `init`, or evaluation on a dataset that keeps no validation data.",
        "model MLP() {\n    input image: float[B, 784]\n    output logits = image |> linear(10)\n}\n\n"
        "train t {\n    model MLP\n    data digits(batch=64)\n    loss cross_entropy(logits, label)\n"
        "    optimizer sgd(lr=0.1)\n    epochs 10\n    steps 5000\n}",
        "Remove one of the conflicting settings, or add the one that is needed.",
    ),
    Code(
        "E0407",
        "reference that names nothing",
        "A name in a `train` or `gan` block refers to nothing: a model that is not declared, a loss input that "
        "is neither an output or input of the model nor a field of the dataset, a role the gan does not have, "
        "a metric the regime does not measure, a teacher without the output the loss predicts from.",
        "model MLP() {\n    input image: float[B, 784]\n    output logits = image |> linear(10)\n}\n\n"
        "train t {\n    model MLP\n    data digits(batch=64)\n    loss cross_entropy(output, label)\n"
        "    optimizer sgd(lr=0.1)\n    epochs 10\n}",
        "Use one of the names the notes list.",
    ),
    Code(
        "E0408",
        "setting given twice",
        "A setting of a `train` block, a role of a per-role setting, or a role of a `gan` block is given "
        "twice. The error points at the second; the first is labelled.",
        "model MLP() {\n    input image: float[B, 784]\n    output logits = image |> linear(10)\n}\n\n"
        "train t {\n    model MLP\n    data digits(batch=64)\n    loss cross_entropy(logits, label)\n"
        "    optimizer sgd(lr=0.1)\n    epochs 10\n    optimizer adam(lr=1e-3)\n}",
        "Keep one of them.",
    ),
    # ---- E05xx: command-line input ---------------------------------------------------
    Code(
        "E0501",
        "input sizes on the command line do not fit",
        "`mspec summary --input NAME=SHAPE` names an input the model does not have, gives the wrong number "
        "of sizes, contradicts a size the input declares or binds the same symbol twice differently; or a "
        "size the summary needs is still unknown. No spec is at fault, so there is no source location.",
        "$ mspec summary specs/gpt2.mspec --input token=1x1024",
        "Name the model's inputs and give one size per dimension (`--input tokens=1x1024`).",
    ),
    # ---- E06xx: backends -------------------------------------------------------------
    Code(
        "E0601",
        "name cannot be a PyTorch submodule",
        "The torch backend makes every layer, block call and `repeat` a submodule attribute named exactly as "
        "the spec names it, because those names are the state_dict keys. A name that Python or PyTorch "
        "cannot take as such an attribute is refused rather than renamed: a Python keyword or soft keyword "
        "(`match`, `case`, `type`, `_`), a name starting with `_` (PyTorch keeps those for itself), a name "
        'that is not a plain ASCII identifier (`name="größe"`), or the name of an `nn.Module` attribute '
        "such as `forward`, `eval`, `to`, `training` or `state_dict`, which the submodule would shadow. "
        "`mspec check` accepts such a spec; `mspec compile` and `modelspec.build` report it. A block called "
        "without a name is named after the block in lower case, so a block `Forward` called as "
        "`x |> Forward()` is refused too.",
        "$ mspec compile net.mspec    # net.mspec: output y = x |> linear(10, name=forward)",
        "Rename the layer with `name=...` or a different binding name.",
    ),
    Code(
        "E0602",
        "size cannot be read off any input",
        "Generated code computes a symbolic size (the `T` of `positions(T)` or `reshape(B, T, -1)`) from the "
        "shape of one of its module's inputs. Each block call and each `repeat` iteration is a module of its "
        "own whose inputs are the tensors it receives; when none of them has the size as one of its "
        "dimensions, the generated code has no way to know it. The usual case is a `repeat` body that uses "
        "a size of a model input it does not otherwise touch.",
        "$ mspec compile net.mspec    # a repeat body computes positions(T); no tensor it takes is [.., T, ..]",
        "Pass a tensor that has the size as a dimension into the block or `repeat` body, or compute the value "
        "outside it.",
    ),
    Code(
        "E0603",
        "op has no lowering in the backend",
        "An op (usually one a plugin registers) is known to the checker, so `mspec check` accepts the spec, "
        "but the chosen backend has no lowering for it. The note names the backends that do lower it.",
        "$ mspec compile net.mspec --backend torch    # net.mspec uses an op whose plugin lowers it for jax only",
        "Compile with a backend that lowers the op, install a plugin that lowers it for this backend, or "
        "write the computation with built-in ops.",
    ),
    Code(
        "E0604",
        "model too large for the device",
        "Building a model (`modelspec.build`, `mspec generate`) first adds up the bytes of its parameters and "
        "buffers in the chosen dtype and compares them with the free memory of the device. A model that "
        "cannot fit is refused before anything is allocated, instead of failing part way or driving the "
        "machine into swap.",
        "$ python -c 'import modelspec; modelspec.build(\"huge.mspec\")'    # 1e12 parameters on a laptop",
        'Build on the meta device to inspect it (`device="meta"`), use a smaller dtype or a larger device, '
        "or make the model smaller.",
    ),
    # ---- E9999: internal ------------------------------------------------------------
    Code(
        "E9999",
        "internal error",
        "modelspec met a construct it has no rule for. This is a bug in modelspec, not a mistake in the "
        "spec; no spec is known to trigger it.",
        "$ mspec check SPEC    # prints `error[E9999]: internal error: ...`",
        "Report it, with the spec that caused it.",
    ),
]

CODES: dict[str, Code] = {c.code: c for c in _ALL}


def markdown() -> str:
    """The error catalogue, docs/errors.md."""
    out = [
        "# Error codes",
        "",
        "<!-- Generated by `python -m modelspec.diagnostics.codes > docs/errors.md` from",
        "     modelspec/diagnostics/codes.py; edit that table, not this file. -->",
        "",
        "Every diagnostic of `mspec` has a code: E00xx reading and parsing a file, E01xx imports, plugins and",
        "declarations, E02xx names and arguments, E03xx types, shapes and values, E04xx `train` and `gan`",
        "blocks (docs/errors-train.md has more on them), E05xx command-line input, E06xx a backend (`mspec",
        "compile`, `modelspec.build`), E9999 a bug in modelspec. `specs/broken/` holds a spec for each code a",
        "spec can trigger, beside what `mspec check` prints for it (`specs/broken/compile/`: what `mspec",
        "compile` prints).",
        "",
    ]
    for c in CODES.values():
        lang = "console" if c.example_is_command else "mspec"
        out += [
            f"## {c.code}: {c.title}",
            "",
            c.explanation,
            "",
            f"```{lang}",
            c.example,
            "```",
            "",
            f"Fix: {c.fix}",
            "",
        ]
    return "\n".join(out)


if __name__ == "__main__":
    print(markdown(), end="")
