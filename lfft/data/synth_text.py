"""The words ``lfft synth`` builds its conversations from: subjects, questions, replies, labels,
personal data and odd Unicode (data only; the generator is in :mod:`lfft.data.synth`)."""

SUBJECTS = [
    "the capital of France",
    "photosynthesis",
    "binary search",
    "compound interest",
    "the French Revolution",
    "TCP versus UDP",
    "black holes",
    "a sourdough starter",
    "git rebase",
    "the Pythagorean theorem",
    "recursion in Python",
    "the water cycle",
    "supply and demand",
    "public key cryptography",
    "the immune system",
    "list comprehensions",
    "the Roman Empire",
    "climate change",
    "neural networks",
    "the stock market",
    "plate tectonics",
    "a healthy breakfast",
    "SQL joins",
    "the theory of relativity",
    "Docker containers",
    "the Renaissance",
    "machine learning",
    "vitamin D",
    "the Great Wall of China",
    "quantum computing",
    "a job interview",
    "the Fibonacci sequence",
    "electric cars",
    "the human heart",
    "Shakespeare's sonnets",
    "regular expressions",
    "inflation",
    "the Amazon rainforest",
    "a marathon training plan",
    "HTTP caching",
    "the moon landing",
    "garbage collection",
    "the Silk Road",
    "a budget spreadsheet",
    "meditation",
    "prime numbers",
    "the printing press",
    "Kubernetes",
    "volcanoes",
    "a cover letter",
    "DNA replication",
    "the Cold War",
    "unit testing",
    "jazz music",
    "the Pacific Ocean",
    "gradient descent",
    "chess openings",
    "a vegetarian lasagna",
    "time zones",
    "solar panels",
]
QUESTIONS = [
    "What is {s}?",
    "Can you explain {s} in simple terms?",
    "How does {s} work?",
    "Give me a short summary of {s}.",
    "Why is {s} important?",
    "What are the main ideas behind {s}?",
    "Write a haiku about {s}.",
    "What should a beginner know about {s}?",
    "Compare {s} with something I already know.",
    "List three facts about {s}.",
    "explain {s} like I'm five",
    "whats the deal with {s}",
]
REPHRASES = [
    "I mean, {q}",
    "Let me rephrase: {q}",
    "{q} Please explain {s} again.",
    "No, I meant {s}. {q}",
]
THANKS = ["Thanks!", "Thank you, that helps.", "thx", "Perfect, thanks!", "Great, thank you!"]
COMPLAINTS = [
    "That's wrong.",
    "This is not what I asked.",
    "That doesn't work.",
    "No, that's not right.",
    "Useless answer, try again.",
]
FOLLOW_UPS = [
    "And how does that relate to {s}?",
    "Can you give an example?",
    "What about {s}?",
    "Tell me more about {s}.",
    "Make it shorter please.",
    "Why?",
]
OPENERS = ["Sure!", "Good question.", "Here is a short explanation.", "Of course.", "", ""]
BODIES = [
    "{S} is best understood step by step.",
    "In short, {s} comes down to a few key ideas.",
    "A common misconception about {s} is that it is simple.",
    "Historically, {s} has been studied for a long time.",
    "The key point about {s} is how its parts interact.",
    "Experts often start with the basics of {s} before the details.",
    "One practical example of {s} appears in everyday life.",
    "There are trade-offs to keep in mind with {s}.",
]
CLOSERS = ["Let me know if you want more detail.", "Hope this helps!", "", ""]
SYSTEMS = [
    "You are a helpful assistant.",
    "You are a concise assistant. Answer in at most three sentences.",
    "You are a friendly tutor for high-school students.",
    "You are an expert software engineer.",
]
LABELS = ["helpful", "correct", "wrong", "harmful", "off-topic", "verbose", "unclear"]
COMMENTS = [
    "Too long, get to the point.",
    "Good answer but it misses an example.",
    "The second sentence is wrong.",
    "Clear and accurate, thanks.",
    "Please cite a source next time.",
    "It did not answer my actual question.",
]
MODELS = ["lfft-chat-1", "lfft-chat-2", "gpt-mini-local"]
PII = [
    "my email is {u}@example.com",
    "you can reach me at +1 415-555-{n:04d}",
    "call me on 020 7946 {n:04d}",
    "my card is 4111 1111 1111 1111",
    "my server is at 192.168.{a}.{b}",
    "the link is https://api.example.com/v1?token=sk_live_{n:08d}abc",
]
ODD_TEXT = ["cafe\u0301", "na\u00efve", "\u200bzero width", "bell\x07char", "emoji \U0001f600"]
THUMBS = [("up", "down"), (True, False), (1, 0), (1, -1)]
