/// Turns a shell line into argv when it is plain words (so that the policy's argv rules
/// see the real command), and into `sh -c LINE` when it uses shell syntax.
public enum ShellWords {
    public static func argv(for line: String) -> [String] {
        var words: [String] = []
        var current = ""
        var inWord = false
        var quote: Character?
        var iterator = line.makeIterator()
        while let character = iterator.next() {
            if let open = quote {
                if character == open {
                    quote = nil
                } else if open == "\"" && character == "\\" {
                    guard let next = iterator.next() else { return ["/bin/sh", "-c", line] }
                    if "$`\"\\\n".contains(next) { current.append(next) } else { current += "\\\(next)" }
                } else {
                    if open == "\"" && (character == "$" || character == "`") { return ["/bin/sh", "-c", line] }
                    current.append(character)
                }
                continue
            }
            switch character {
            case " ", "\t":
                if inWord { words.append(current); current = ""; inWord = false }
            case "'", "\"":
                quote = character
                inWord = true
            case "\\":
                guard let next = iterator.next() else { return ["/bin/sh", "-c", line] }
                current.append(next)
                inWord = true
            case "|", "&", ";", "<", ">", "(", ")", "$", "`", "*", "?", "[", "{", "}", "\n":
                // Shell syntax (or a glob, a variable, an assignment): the shell runs it.
                return ["/bin/sh", "-c", line]
            case "#", "~" where !inWord:
                // A comment, or a home directory to expand.
                return ["/bin/sh", "-c", line]
            default:
                current.append(character)
                inWord = true
            }
        }
        if quote != nil { return ["/bin/sh", "-c", line] }
        if inWord { words.append(current) }
        // `NAME=value command` sets a variable for the command: the shell's job.
        if words.isEmpty || words[0].contains("=") { return ["/bin/sh", "-c", line] }
        return words
    }
}
