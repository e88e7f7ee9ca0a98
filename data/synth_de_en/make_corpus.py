"""Generate a small synthetic German->English parallel corpus from a synchronous grammar.

Every derivation of the grammar builds a German sentence and its English translation at the
same time, so each German sentence has exactly one reference translation.  The German side is
morphologically faithful; the English side is its literal, natural-ish translation.

Phenomena covered
-----------------
* Noun phrases: gender (der/die/das), number (Hund/Hunde, dative plural Hunden), case
  (nominative / accusative / dative), weak masculine nouns (der Junge, den Jungen), and the
  determiners der (the), dieser (this/these), ein (a/an, zero article in the plural), kein
  (negation), mein (my) and unser (our).
* Attributive adjectives with weak endings after der/dieser (der alte Mann, den alten Mann),
  mixed endings after ein/kein/mein/unser (ein alter Mann, einen alten Mann, ein altes Haus)
  and strong endings without an article (alte Männer), including stem changes (teuer -> teure).
* Subject-verb agreement for ich / wir / er and 3rd person singular and plural noun phrases
  (ich sehe, er sieht, die Hunde sehen -> I see, he sees, the dogs see).
* Verb frames: intransitive, movement, transitive (accusative), dative verbs (hilft dem Kind),
  ditransitive verbs (gibt dem Kind einen Ball -> gives the child a ball), copula with a
  predicate adjective or location, and verbs of saying with a dass-clause.
* Prepositions with their case, contractions (im, ins, zum, zur) and the two-way preposition
  "in" (im Garten -> in the garden, in den Garten -> into the garden).
* Verb-second order with a fronted adverb, prepositional phrase, accusative object (only
  unambiguous masculine ones: "Den Hund sieht der Mann.") or subordinate clause; verb-final
  order in subordinate clauses (weil, obwohl, wenn, während, dass).
* Separable verbs (ruft ... an / anrufen -> phones), modal verbs (will/kann/muss + infinitive at
  the end -> wants to / can / has to), negation with nicht and kein (English do-support).
* Adverb placement: German adverbs follow the finite verb; English frequency adverbs precede the
  verb, manner adverbs follow the objects and time adverbs end the clause.

The lexicon (tables below) has a few hundred words; every German word form translates the same way
in the same context.  Sentences are deduplicated by their German side across all splits, so the
validation and test sentences never occur in the training set.

Usage::

    python data/synth_de_en/make_corpus.py --out data/synth_de_en --seed 1234

The output is fully determined by the seed and the split sizes (only ``random.Random(seed)`` is used).
"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parent  # the corpus lives beside its generator
DEFAULT_SEED = 1234
MIN_WORDS = 4
MAX_WORDS = 16

# ---------------------------------------------------------------------------------------------
# Lexicon.  Columns are separated by whitespace; "_" stands for a space inside an English entry.
# Tags: P person, A animal, T thing, F food, L place; the other tags restrict which verbs or
# prepositions a noun combines with (read, write, open, fix, build, clean, song, tell; in / auf /
# unter / durch say which locative or directional prepositions a place takes); "weak" marks weak
# masculine nouns whose oblique singular equals the plural (den Jungen, dem Bären); "noposs" keeps
# mein/unser away from nouns whose meaning would change (meine Frau = my wife, not my woman).
# ---------------------------------------------------------------------------------------------

NOUN_TABLE = """
# singular   plural         g  english      english_pl    tags
Mann         Männer         m  man          men           P,noposs
Frau         Frauen         f  woman        women         P,noposs
Kind         Kinder         n  child        children      P
Junge        Jungen         m  boy          boys          P,weak
Mädchen      Mädchen        n  girl         girls         P
Lehrer       Lehrer         m  teacher      teachers      P
Arzt         Ärzte          m  doctor       doctors       P
Student      Studenten      m  student      students      P,weak
Bauer        Bauern         m  farmer       farmers       P,weak
Koch         Köche          m  cook         cooks         P
König        Könige         m  king         kings         P
Königin      Königinnen     f  queen        queens        P
Polizist     Polizisten     m  policeman    policemen     P,weak
Nachbar      Nachbarn       m  neighbor     neighbors     P,weak
Freund       Freunde        m  friend       friends       P
Schwester    Schwestern     f  sister       sisters       P
Bruder       Brüder         m  brother      brothers      P
Mutter       Mütter         f  mother       mothers       P
Vater        Väter          m  father       fathers       P
Tochter      Töchter        f  daughter     daughters     P
Sohn         Söhne          m  son          sons          P
Maler        Maler          m  painter      painters      P
Fahrer       Fahrer         m  driver       drivers       P
Kellner      Kellner        m  waiter       waiters       P
Soldat       Soldaten       m  soldier      soldiers      P,weak
Richter      Richter        m  judge        judges        P
Schüler      Schüler        m  pupil        pupils        P
Tante        Tanten         f  aunt         aunts         P
Onkel        Onkel          m  uncle        uncles        P
Sängerin     Sängerinnen    f  singer       singers       P
Tourist      Touristen      m  tourist      tourists      P,weak
Prinzessin   Prinzessinnen  f  princess     princesses    P
Hund         Hunde          m  dog          dogs          A
Katze        Katzen         f  cat          cats          A
Pferd        Pferde         n  horse        horses        A
Vogel        Vögel          m  bird         birds         A
Maus         Mäuse          f  mouse        mice          A
Kuh          Kühe           f  cow          cows          A
Schaf        Schafe         n  sheep        sheep         A
Löwe         Löwen          m  lion         lions         A,weak
Affe         Affen          m  monkey       monkeys       A,weak
Bär          Bären          m  bear         bears         A,weak
Elefant      Elefanten      m  elephant     elephants     A,weak
Hase         Hasen          m  hare         hares         A,weak
Fuchs        Füchse         m  fox          foxes         A
Wolf         Wölfe          m  wolf         wolves        A
Ente         Enten          f  duck         ducks         A
Schwein      Schweine       n  pig          pigs          A
Huhn         Hühner         n  chicken      chickens      A
Schlange     Schlangen      f  snake        snakes        A
Ziege        Ziegen         f  goat         goats         A
Esel         Esel           m  donkey       donkeys       A
Fisch        Fische         m  fish         fish          A,F,cut
Buch         Bücher         n  book         books         T,read,write
Brief        Briefe         m  letter       letters       T,read,write
Zeitung      Zeitungen      f  newspaper    newspapers    T,read
Ball         Bälle          m  ball         balls         T
Tisch        Tische         m  table        tables        T,build,fix,clean,auf,unter
Stuhl        Stühle         m  chair        chairs        T,build,fix,auf,unter
Bett         Betten         n  bed          beds          T,build,fix,in,unter
Auto         Autos          n  car          cars          T,fix,clean,in
Fahrrad      Fahrräder      n  bicycle      bicycles      T,fix,clean
Schlüssel    Schlüssel      m  key          keys          T
Tasche       Taschen        f  bag          bags          T,open
Lampe        Lampen         f  lamp         lamps         T,fix
Blume        Blumen         f  flower       flowers       T
Tasse        Tassen         f  cup          cups          T,clean
Flasche      Flaschen       f  bottle       bottles       T,open
Hut          Hüte           m  hat          hats          T
Mantel       Mäntel         m  coat         coats         T
Kleid        Kleider        n  dress        dresses       T
Schuh        Schuhe         m  shoe         shoes         T
Uhr          Uhren          f  clock        clocks        T,fix
Bild         Bilder         n  picture      pictures      T
Stift        Stifte         m  pen          pens          T
Teller       Teller         m  plate        plates        T,clean
Messer       Messer         n  knife        knives        T
Löffel       Löffel         m  spoon        spoons        T
Glas         Gläser         n  glass        glasses       T,clean
Kiste        Kisten         f  box          boxes         T,open,build
Koffer       Koffer         m  suitcase     suitcases     T,open
Geschenk     Geschenke      n  gift         gifts         T,open
Kerze        Kerzen         f  candle       candles       T
Spiegel      Spiegel        m  mirror       mirrors       T,clean
Fenster      Fenster        n  window       windows       T,open,fix,clean
Tür          Türen          f  door         doors         T,open,fix
Lied         Lieder         n  song         songs         song,write
Geschichte   Geschichten    f  story        stories       tell,read,write
Witz         Witze          m  joke         jokes         tell
Märchen      Märchen        n  fairy_tale   fairy_tales   tell,read
Apfel        Äpfel          m  apple        apples        F,cut
Kuchen       Kuchen         m  cake         cakes         F,cut
Ei           Eier           n  egg          eggs          F
Birne        Birnen         f  pear         pears         F,cut
Suppe        Suppen         f  soup         soups         F
Wurst        Würste         f  sausage      sausages      F,cut
Kartoffel    Kartoffeln     f  potato       potatoes      F,cut
Tomate       Tomaten        f  tomato       tomatoes      F,cut
Banane       Bananen        f  banana       bananas       F,cut
Keks         Kekse          m  cookie       cookies       F
Garten       Gärten         m  garden       gardens       L,in,durch
Park         Parks          m  park         parks         L,in,durch
Haus         Häuser         n  house        houses        L,in,build,clean
Küche        Küchen         f  kitchen      kitchens      L,in,clean,room
Schule       Schulen        f  school       schools       L,in,build
Wald         Wälder         m  forest       forests       L,in,durch
Stadt        Städte         f  city         cities        L,in,durch
Dorf         Dörfer         n  village      villages      L,in,durch
Straße       Straßen        f  street       streets       L,auf,durch
Bahnhof      Bahnhöfe       m  station      stations      L,in
Markt        Märkte         m  market       markets       L,auf
Kirche       Kirchen        f  church       churches      L,in
Fluss        Flüsse         m  river        rivers        L,in
See          Seen           m  lake         lakes         L,in
Berg         Berge          m  mountain     mountains     L,auf
Feld         Felder         n  field        fields        L,auf
Zimmer       Zimmer         n  room         rooms         L,in,clean,room
Hotel        Hotels         n  hotel        hotels        L,in
Büro         Büros          n  office       offices       L,in,clean,room
Brücke       Brücken        f  bridge       bridges       L,auf,unter,build
Wiese        Wiesen         f  meadow       meadows       L,auf,durch
Insel        Inseln         f  island       islands       L,auf
Strand       Strände        m  beach        beaches       L,auf
Baum         Bäume          m  tree         trees         L,unter
"""

# Adjectives: predicative form, stem used before endings, English, noun classes they modify.
ADJECTIVE_TABLE = """
# adjective   stem         english      applies_to
alt           alt          old          P,A,T,L,song,tell
jung          jung         young        P,A
klein         klein        small        P,A,T,F,L
groß          groß         big          P,A,T,F,L
neu           neu          new          T,L,song,tell
schön         schön        beautiful    P,A,T,L,song
hässlich      hässlich     ugly         P,A,T
rot           rot          red          T
blau          blau         blue         T
grün          grün         green        T,F
gelb          gelb         yellow       T,F
schwarz       schwarz      black        A,T
weiß          weiß         white        A,T
braun         braun        brown        A,T
grau          grau         gray         A,T
müde          müd          tired        P,A
hungrig       hungrig      hungry       P,A
glücklich     glücklich    happy        P,A
traurig       traurig      sad          P,A
krank         krank        sick         P,A
klug          klug         clever       P,A
dumm          dumm         stupid       P,A
freundlich    freundlich   friendly     P,A
nett          nett         nice         P
reich         reich        rich         P
arm           arm          poor         P,A
stark         stark        strong       P,A
mutig         mutig        brave        P,A
faul          faul         lazy         P,A
neugierig     neugierig    curious      P,A
hübsch        hübsch       pretty       P
wild          wild         wild         A
lustig        lustig       funny        P,A,song,tell
berühmt       berühmt      famous       P,L
ruhig         ruhig        quiet        P,A,L
teuer         teur         expensive    T
billig        billig       cheap        T
sauber        sauber       clean        T,L
schmutzig     schmutzig    dirty        P,A,T,L
dunkel        dunkl        dark         T,L
leer          leer         empty        T
voll          voll         full         T
schwer        schwer       heavy        T
rund          rund         round        T,F
warm          warm         warm         F
kalt          kalt         cold         F
süß           süß          sweet        F
frisch        frisch       fresh        F
lecker        lecker       delicious    F
lang          lang         long         T,song,tell
kurz          kurz         short        T,song,tell
"""

# Verbs: German infinitive ("|" separates the particle of a separable verb), 1st and 3rd person
# singular present (without particle), English base form, frame, subject classes, object classes,
# indirect-object classes (ditransitive only) and the kinds of prepositional phrase allowed.
# Frames: intr, move (intransitive + directional PPs), trans (accusative object), dat (dative
# object), ditr (dative + accusative), say (dass-clause).
VERB_TABLE = """
# infinitive    1sg        3sg         english        frame  subject  object          indirect  pp
schlafen        schlafe    schläft     sleep          intr   P,A      -               -         loc,com
lachen          lache      lacht       laugh          intr   P        -               -         loc,com
weinen          weine      weint       cry            intr   P        -               -         loc,com
arbeiten        arbeite    arbeitet    work           intr   P        -               -         loc,com
spielen         spiele     spielt      play           intr   P,A      -               -         loc,com
singen          singe      singt       sing           intr   P        -               -         loc,com
tanzen          tanze      tanzt       dance          intr   P        -               -         loc,com
warten          warte      wartet      wait           intr   P,A      -               -         loc,com
sitzen          sitze      sitzt       sit            intr   P,A      -               -         loc,com
stehen          stehe      steht       stand          loc    P,A,T    -               -         loc
liegen          liege      liegt       lie            loc    P,A,T,F  -               -         loc
träumen         träume     träumt      dream          intr   P,A      -               -         loc
lächeln         lächle     lächelt     smile          intr   P        -               -         loc,com
schreien        schreie    schreit     scream         intr   P,A      -               -         loc
ein|schlafen    schlafe    schläft     fall_asleep    intr   P,A      -               -         loc
auf|stehen      stehe      steht       get_up         intr   P,A      -               -         -
wohnen          wohne      wohnt       live           loc    P        -               -         loc
gehen           gehe       geht        walk           move   P,A      -               -         dir,loc,com
laufen          laufe      läuft       run            move   P,A      -               -         dir,loc,com
fahren          fahre      fährt       drive          move   P        -               -         dir,com
schwimmen       schwimme   schwimmt    swim           move   P,A      -               -         dir,loc,com
kommen          komme      kommt       come           move   P,A      -               -         dir,com
springen        springe    springt     jump           move   P,A      -               -         dir,loc
fallen          falle      fällt       fall           move   P,A,T,F  -               -         dir
zurück|kommen   komme      kommt       come_back      intr   P,A      -               -         com
an|kommen       komme      kommt       arrive         intr   P,A      -               -         loc,com
singen          singe      singt       sing           trans  P        song            -         loc,com
sehen           sehe       sieht       see            trans  P,A      P,A,T,L         -         loc
hören           höre       hört        hear           trans  P,A      P,A,song        -         loc
suchen          suche      sucht       look_for       trans  P,A      P,A,T           -         loc,com
finden          finde      findet      find           trans  P,A      P,A,T           -         loc
kaufen          kaufe      kauft       buy            trans  P        A,T,F           -         loc,com
verkaufen       verkaufe   verkauft    sell           trans  P        A,T,F           -         loc,com
tragen          trage      trägt       carry          trans  P,A      T,F             -         loc,com
brauchen        brauche    braucht     need           trans  P,A      P,A,T           -         -
lieben          liebe      liebt       love           trans  P,A      P,A,song        -         -
mögen           mag        mag         like           trans  P,A      P,A,T,F,song    -         -
hassen          hasse      hasst       hate           trans  P,A      P,A,F           -         -
malen           male       malt        paint          trans  P        P,A,T,L         -         loc,com
besuchen        besuche    besucht     visit          trans  P        P,L             -         com
rufen           rufe       ruft        call           trans  P,A      P,A             -         loc
fangen          fange      fängt       catch          trans  P,A      A,T             -         loc
werfen          werfe      wirft       throw          trans  P        T,F             -         loc
halten          halte      hält        hold           trans  P        A,T             -         loc
öffnen          öffne      öffnet      open           trans  P        open            -         com
schließen       schließe   schließt    close          trans  P        open            -         com
lesen           lese       liest       read           trans  P        read            -         loc,com
schreiben       schreibe   schreibt    write          trans  P        write           -         loc,com
essen           esse       isst        eat            trans  P,A      F               -         loc,com
kochen          koche      kocht       cook           trans  P        F               -         loc,com
waschen         wasche     wäscht      wash           trans  P        A,T             -         loc
bauen           baue       baut        build          trans  P        build           -         com
reparieren      repariere  repariert   repair         trans  P        fix             -         loc,com
vergessen       vergesse   vergisst    forget         trans  P        P,T             -         loc
verlieren       verliere   verliert    lose           trans  P        T               -         loc
füttern         füttere    füttert     feed           trans  P        A               -         loc,com
treffen         treffe     trifft      meet           trans  P        P               -         loc
kennen          kenne      kennt       know           trans  P,A      P,L,song        -         -
fragen          frage      fragt       ask            trans  P        P               -         loc
beobachten      beobachte  beobachtet  watch          trans  P,A      P,A             -         loc
zählen          zähle      zählt       count          trans  P        A,T,F           -         loc
putzen          putze      putzt       clean          trans  P        clean           -         com
schneiden       schneide   schneidet   cut            trans  P        cut             -         loc
zeichnen        zeichne    zeichnet    draw           trans  P        P,A,T           -         loc
umarmen         umarme     umarmt      hug            trans  P        P,A             -         loc
küssen          küsse      küsst       kiss           trans  P        P,A             -         loc
grüßen          grüße      grüßt       greet          trans  P        P               -         loc
an|rufen        rufe       ruft        phone          trans  P        P               -         -
an|sehen        sehe       sieht       look_at        trans  P,A      P,A,T           -         loc
ab|holen        hole       holt        pick_up        trans  P        P               -         com
ein|laden       lade       lädt        invite         trans  P        P               -         -
auf|räumen      räume      räumt       tidy_up        trans  P        room            -         com
helfen          helfe      hilft       help           dat    P,A      P,A             -         loc
danken          danke      dankt       thank          dat    P        P               -         -
folgen          folge      folgt       follow         dat    P,A      P,A             -         loc
antworten       antworte   antwortet   answer         dat    P        P               -         -
vertrauen       vertraue   vertraut    trust          dat    P,A      P,A             -         -
winken          winke      winkt       wave_to        dat    P        P               -         loc
geben           gebe       gibt        give           ditr   P        T,F             P,A       -
zeigen          zeige      zeigt       show           ditr   P        A,T             P         -
bringen         bringe     bringt      bring          ditr   P        T,F             P         -
schicken        schicke    schickt     send           ditr   P        T               P         -
erzählen        erzähle    erzählt     tell           ditr   P        tell            P         -
sagen           sage       sagt        say            say    P        -               -         -
glauben         glaube     glaubt      believe        say    P        -               -         -
denken          denke      denkt       think          say    P        -               -         -
hoffen          hoffe      hofft       hope           say    P        -               -         -
wissen          weiß       weiß        know           say    P        -               -         -
"""

# Adverbs: German, English, kind (freq: before the English verb; time: end of the English clause;
# manner: after the English objects) and whether the adverb may be fronted (V2: "Heute sieht ...").
ADVERB_TABLE = """
# german   english           kind     fronted
oft        often             freq     yes
immer      always            freq     no
selten     rarely            freq     no
manchmal   sometimes         freq     yes
meistens   usually           freq     yes
heute      today             time     yes
morgen     tomorrow          time     yes
jetzt      now               time     yes
bald       soon              time     yes
wieder     again             time     no
morgens    in_the_morning    time     yes
abends     in_the_evening    time     yes
nachts     at_night          time     yes
schnell    quickly           manner   no
langsam    slowly            manner   no
leise      quietly           manner   no
laut       loudly            manner   no
allein     alone             manner   no
"""

# Prepositions: German, English, case, kind (loc, com, dir) and the noun tags they take.
PREPOSITION_TABLE = """
in      in            dat  loc  in
auf     on            dat  loc  auf
unter   under         dat  loc  unter
neben   next_to       dat  loc  in,auf,unter
hinter  behind        dat  loc  in,auf,unter
vor     in_front_of   dat  loc  in,auf,unter
mit     with          dat  com  P,A
für     for           acc  com  P,A
ohne    without       acc  com  P,A
zu      to            dat  dir  L,P
in      into          acc  dir  in
aus     out_of        dat  dir  in
durch   through       acc  dir  durch
"""

# Definite article + preposition contractions.
CONTRACTIONS = {("in", "dem"): "im", ("in", "das"): "ins", ("zu", "dem"): "zum", ("zu", "der"): "zur"}

# Determiner forms by gender/number and case.  "ein" has no plural (zero article: "Hunde");
# kein/mein/unser inflect like ein but have plural forms.
DETERMINER_TABLE = """
# determiner  gender  nominative  accusative  dative
def           m       der         den         dem
def           f       die         die         der
def           n       das         das         dem
def           pl      die         die         den
this          m       dieser      diesen      diesem
this          f       diese       diese       dieser
this          n       dieses      dieses      diesem
this          pl      diese       diese       diesen
indef         m       ein         einen       einem
indef         f       eine        eine        einer
indef         n       ein         ein         einem
indef         pl      -           -           -
kein          m       kein        keinen      keinem
kein          f       keine       keine       keiner
kein          n       kein        kein        keinem
kein          pl      keine       keine       keinen
my            m       mein        meinen      meinem
my            f       meine       meine       meiner
my            n       mein        mein        meinem
my            pl      meine       meine       meinen
our           m       unser       unseren     unserem
our           f       unsere      unsere      unserer
our           n       unser       unser       unserem
our           pl      unsere      unsere      unseren
"""
CASES = ("nom", "acc", "dat")

# Adjective endings by inflection class, gender/number and case.
WEAK_ENDINGS = {"m": ("e", "en", "en"), "f": ("e", "e", "en"), "n": ("e", "e", "en"), "pl": ("en", "en", "en")}
MIXED_ENDINGS = {"m": ("er", "en", "en"), "f": ("e", "e", "en"), "n": ("es", "es", "en"), "pl": ("en", "en", "en")}
STRONG_PLURAL_ENDINGS = ("e", "e", "en")

# English determiners: singular and plural.
ENGLISH_DETERMINERS = {
    "def": ("the", "the"),
    "this": ("this", "these"),
    "indef": ("a", ""),
    "kein": ("a", "any"),
    "my": ("my", "my"),
    "our": ("our", "our"),
}
DETERMINER_WEIGHTS = {"def": 50, "indef": 22, "this": 10, "my": 9, "our": 9}

# Pronoun subjects: German, English, person.
PRONOUNS = (("ich", "I", "1sg"), ("wir", "we", "1pl"), ("er", "he", "3sg"))

# Modal verbs: German 1sg, 3sg, plural; English affirmative (3sg, other), negated (3sg, other).
MODALS = {
    "wollen": (("will", "will", "wollen"), ("wants to", "want to"), ("does not want to", "do not want to")),
    "können": (("kann", "kann", "können"), ("can", "can"), ("cannot", "cannot")),
    "müssen": (("muss", "muss", "müssen"), ("has to", "have to"), ("does not have to", "do not have to")),
}

# Subordinating conjunctions (German, English) for adverbial clauses.
CONJUNCTIONS = (("weil", "because"), ("obwohl", "although"), ("wenn", "when"), ("während", "while"))

# Probabilities of the main sentence shapes.
SHAPE_WEIGHTS = {"simple": 56, "main_sub": 18, "sub_main": 10, "say": 16}
FRAME_WEIGHTS = {"intr": 13, "loc": 4, "move": 13, "trans": 36, "dat": 8, "ditr": 7, "cop": 19}


# ---------------------------------------------------------------------------------------------
# Lexicon data structures
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)  # nouns compare by identity (fast membership tests)
class Noun:
    de: str
    de_pl: str
    gender: str
    en: str
    en_pl: str
    tags: tuple[str, ...]

    @property
    def weak(self) -> bool:
        return "weak" in self.tags

    def german(self, plural: bool, case: str) -> str:
        if plural:
            if case == "dat" and not self.de_pl.endswith(("n", "s")):
                return self.de_pl + "n"
            return self.de_pl
        if self.weak and case != "nom":
            return self.de_pl
        return self.de


@dataclass(frozen=True)
class Adjective:
    de: str
    stem: str
    en: str
    tags: tuple[str, ...]


@dataclass(frozen=True)
class Verb:
    de_inf: str  # infinitive without particle (also the plural form)
    de_1sg: str
    de_3sg: str
    particle: str
    en: str  # English base form, possibly several words ("look for")
    frame: str
    subj: tuple[str, ...]
    obj: tuple[str, ...]
    iobj: tuple[str, ...]
    pp: tuple[str, ...]

    @property
    def infinitive(self) -> str:
        return self.particle + self.de_inf

    def finite(self, person: str) -> str:
        return {"1sg": self.de_1sg, "3sg": self.de_3sg}.get(person, self.de_inf)

    @property
    def en_3sg(self) -> str:
        head, _, rest = self.en.partition(" ")
        return (english_s_form(head) + " " + rest).strip()


@dataclass(frozen=True)
class Adverb:
    de: str
    en: str
    kind: str
    frontable: bool


@dataclass(frozen=True)
class Preposition:
    de: str
    en: str
    case: str
    kind: str
    tags: tuple[str, ...]


def _rows(table: str) -> list[list[str]]:
    rows = []
    for line in table.strip().splitlines():
        if line.strip() and not line.startswith("#"):
            rows.append([field.replace("_", " ") for field in line.split()])
    return rows


def _tags(field: str) -> tuple[str, ...]:
    return () if field == "-" else tuple(field.split(","))


def english_s_form(word: str) -> str:
    """Third person singular / regular plural of an English word (see -> sees, watch -> watches)."""
    if word.endswith(("s", "sh", "ch", "x", "z", "o")):
        return word + "es"
    if word.endswith("y") and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


NOUNS = [Noun(r[0], r[1], r[2], r[3], r[4], _tags(r[5])) for r in _rows(NOUN_TABLE)]
ADJECTIVES = [Adjective(r[0], r[1], r[2], _tags(r[3])) for r in _rows(ADJECTIVE_TABLE)]
VERBS = [
    Verb(
        r[0].split("|")[-1],
        r[1],
        r[2],
        r[0].split("|")[0] if "|" in r[0] else "",
        r[3],
        r[4],
        _tags(r[5]),
        _tags(r[6]),
        _tags(r[7]),
        _tags(r[8]),
    )
    for r in _rows(VERB_TABLE)
]
ADVERBS = [Adverb(r[0], r[1], r[2], r[3] == "yes") for r in _rows(ADVERB_TABLE)]
PREPOSITIONS = [Preposition(r[0], r[1], r[2], r[3], _tags(r[4])) for r in _rows(PREPOSITION_TABLE)]
DETERMINERS: dict[str, dict[str, tuple[str, ...]]] = {}
for _det, _gender, *_forms in _rows(DETERMINER_TABLE):
    DETERMINERS.setdefault(_det, {})[_gender] = tuple("" if f == "-" else f for f in _forms)


# ---------------------------------------------------------------------------------------------
# Noun phrases
# ---------------------------------------------------------------------------------------------


def german_np(noun: Noun, plural: bool, case: str, det: str, adj: Adjective | None) -> str:
    """German noun phrase, e.g. german_np(Hund, False, "acc", "indef", alt) == "einen alten Hund"."""
    key = "pl" if plural else noun.gender
    c = CASES.index(case)
    article = DETERMINERS[det][key][c]
    words = [article] if article else []
    if adj is not None:
        if det in ("def", "this"):
            ending = WEAK_ENDINGS[key][c]
        elif plural and not article:
            ending = STRONG_PLURAL_ENDINGS[c]
        else:
            ending = MIXED_ENDINGS[key][c]
        words.append(adj.stem + ending)
    words.append(noun.german(plural, case))
    return " ".join(words)


def english_np(noun: Noun, plural: bool, det: str, adj: Adjective | None) -> str:
    """English noun phrase, e.g. english_np(Hund, False, "indef", alt) == "an old dog"."""
    article = ENGLISH_DETERMINERS[det][1 if plural else 0]
    words = [adj.en] if adj is not None else []
    words.append(noun.en_pl if plural else noun.en)
    if article == "a" and words[0][0] in "aeiou":
        article = "an"
    return " ".join(([article] if article else []) + words)


@dataclass
class Phrase:
    de: str
    en: str


@cache
def nouns_with(tags: tuple[str, ...]) -> list[Noun]:
    """Nouns carrying at least one of ``tags``, in lexicon order."""
    return [n for n in NOUNS if any(tag in n.tags for tag in tags)]


@cache
def adjectives_for(noun_tags: tuple[str, ...]) -> list[Adjective]:
    """Adjectives that can modify a noun with ``noun_tags``, in lexicon order."""
    return [a for a in ADJECTIVES if any(tag in noun_tags for tag in a.tags)]


# ---------------------------------------------------------------------------------------------
# Clauses: one derivation, rendered as German main / subordinate clause and as English
# ---------------------------------------------------------------------------------------------


@dataclass
class Clause:
    subj: Phrase
    person: str
    verb: Verb | None  # None: copula "sein"
    modal: str | None = None
    negated: bool = False
    kein: bool = False
    frontable_object: bool = False
    predicate: Phrase | None = None
    pp: Phrase | None = None
    adverb: Adverb | None = None
    objects: list[Phrase] = field(default_factory=list)

    # -- German --------------------------------------------------------------------------------

    def _german_finite(self) -> str:
        if self.modal is not None:
            sg1, sg3, plural = MODALS[self.modal][0]
            return {"1sg": sg1, "3sg": sg3}.get(self.person, plural)
        if self.verb is None:
            return {"1sg": "bin", "3sg": "ist"}.get(self.person, "sind")
        return self.verb.finite(self.person)

    def _german_middle(self) -> list[str]:
        words = [o.de for o in self.objects]
        if self.negated and not self.kein:
            words.append("nicht")
        if self.predicate is not None:
            words.append(self.predicate.de)
        if self.pp is not None:
            words.append(self.pp.de)
        return words

    def german_main(self, front: str) -> list[str]:
        """Verb-second main clause; ``front`` is the constituent before the finite verb
        ("subject", "adverb", "pp", "object", or "verb" when a subordinate clause precedes)."""
        middle = [self.subj.de]
        if self.adverb is not None:
            middle.append(self.adverb.de)
        middle += self._german_middle()
        if self.modal is not None:
            middle.append("sein" if self.verb is None else self.verb.infinitive)
        elif self.verb is not None and self.verb.particle:
            middle.append(self.verb.particle)
        first: list[str] = []
        if front == "subject":
            first = [middle.pop(0)]
        elif front == "adverb":
            assert self.adverb is not None
            first = [self.adverb.de]
            middle.remove(self.adverb.de)
        elif front == "pp":
            assert self.pp is not None
            first = [self.pp.de]
            middle.remove(self.pp.de)
        elif front == "object":
            first = [self.objects[0].de]
            middle.remove(self.objects[0].de)
        return first + [self._german_finite()] + middle

    def german_sub(self, conj: str | None = None) -> list[str]:
        """Verb-final subordinate clause (without the conjunction when ``conj`` is None)."""
        words = [conj] if conj else []
        words.append(self.subj.de)
        if self.adverb is not None:
            words.append(self.adverb.de)
        words += self._german_middle()
        if self.modal is not None:
            words.append("sein" if self.verb is None else self.verb.infinitive)
            words.append(self._german_finite())
        elif self.verb is not None:
            words.append(self.verb.particle + self._german_finite())
        else:
            words.append(self._german_finite())
        return words

    # -- English -------------------------------------------------------------------------------

    def _english_verb_group(self) -> list[str]:
        third = self.person == "3sg"
        base = "be" if self.verb is None else self.verb.en
        if self.modal is not None:
            forms = MODALS[self.modal][2 if self.negated else 1]
            return [forms[0] if third else forms[1], base]
        if self.verb is None:
            be = {"1sg": "am", "3sg": "is"}.get(self.person, "are")
            return [be, "not"] if self.negated else [be]
        if self.negated:
            return ["does not" if third else "do not", base]
        return [self.verb.en_3sg if third else base]

    def english(self, front: str = "subject") -> list[str]:
        group = self._english_verb_group()
        adverb = self.adverb
        if adverb is not None and adverb.kind == "freq" and front != "adverb":
            # after "be" and "can" (is often tired, can often see), otherwise before (often wants to see)
            group.insert(1 if group[0] in ("am", "is", "are", "can") else 0, adverb.en)
        words = [self.subj.en] + group + [o.en for o in self.objects]
        if self.predicate is not None:
            words.append(self.predicate.en)
        if adverb is not None and adverb.kind == "manner":
            words.append(adverb.en)
        if self.pp is not None and front != "pp":
            words.append(self.pp.en)
        if adverb is not None and adverb.kind == "time" and front != "adverb":
            words.append(adverb.en)
        if front == "adverb":
            assert adverb is not None
            words.insert(0, adverb.en)
        elif front == "pp":
            assert self.pp is not None
            words.insert(0, self.pp.en)
        return words


def finish(words: list[str]) -> str:
    """Join words, attach commas, capitalise the first letter and add the final period."""
    text = " ".join(words).replace(" ,", ",")
    return text[0].upper() + text[1:] + "."


# ---------------------------------------------------------------------------------------------
# Random derivations
# ---------------------------------------------------------------------------------------------


class Generator:
    """Random derivations of the synchronous grammar, driven by a single ``random.Random``."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.verbs_by_frame: dict[str, list[Verb]] = {}
        for verb in VERBS:
            self.verbs_by_frame.setdefault(verb.frame, []).append(verb)

    # -- small helpers -------------------------------------------------------------------------

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def weighted(self, weights: dict[str, int]) -> str:
        keys = list(weights)
        return self.rng.choices(keys, weights=[weights[k] for k in keys])[0]

    def pick_noun(self, tags: tuple[str, ...], avoid: list[Noun]) -> Noun:
        return self.rng.choice([n for n in nouns_with(tags) if n not in avoid])

    def pick_adjective(self, noun_tags: tuple[str, ...]) -> Adjective:
        return self.rng.choice(adjectives_for(noun_tags))

    def noun_phrase(
        self,
        tags: tuple[str, ...],
        case: str,
        avoid: list[Noun],
        *,
        p_plural: float = 0.3,
        p_adj: float = 0.3,
        negated: bool = False,
    ) -> tuple[Phrase, Noun, bool, str]:
        noun = self.pick_noun(tags, avoid)
        avoid.append(noun)
        plural = self.chance(p_plural)
        det = self.weighted(DETERMINER_WEIGHTS)
        while det in ("my", "our") and "noposs" in noun.tags:
            det = self.weighted(DETERMINER_WEIGHTS)
        if negated and det == "indef":
            det = "kein"
        adj = self.pick_adjective(noun.tags) if self.chance(p_adj) else None
        phrase = Phrase(german_np(noun, plural, case, det, adj), english_np(noun, plural, det, adj))
        return phrase, noun, plural, det

    def prep_phrase(self, kinds: tuple[str, ...], avoid: list[Noun]) -> Phrase:
        prep = self.rng.choice([p for p in PREPOSITIONS if p.kind in kinds])
        np, _, _, det = self.noun_phrase(prep.tags, prep.case, avoid, p_plural=0.15, p_adj=0.15)
        article, _, rest = np.de.partition(" ")
        if det == "def" and (prep.de, article) in CONTRACTIONS:
            return Phrase(f"{CONTRACTIONS[prep.de, article]} {rest}", f"{prep.en} {np.en}")
        return Phrase(f"{prep.de} {np.de}", f"{prep.en} {np.en}")

    # -- clauses -------------------------------------------------------------------------------

    def clause(self, frame: str | None = None, *, allow_modal: bool = True) -> Clause:
        frame = frame or self.weighted(FRAME_WEIGHTS)
        verb = None if frame == "cop" else self.rng.choice(self.verbs_by_frame[frame])
        subj_tags = ("P", "A", "T", "F", "L", "song", "tell") if verb is None else verb.subj
        avoid: list[Noun] = []

        # Subject: a pronoun (persons only) or a nominative noun phrase.
        if "P" in subj_tags and self.chance(0.15):
            de, en, person = self.rng.choice(PRONOUNS)
            subj = Phrase(de, en)
            subj_class = ("P",)
        else:
            subj, noun, plural, _ = self.noun_phrase(subj_tags, "nom", avoid)
            person = "3pl" if plural else "3sg"
            subj_class = noun.tags

        c = Clause(subj=subj, person=person, verb=verb)
        c.negated = self.chance(0.15)
        if frame != "say" and allow_modal and self.chance(0.15):
            c.modal = self.rng.choice(list(MODALS))

        # Objects: the last object carries "kein" when the clause is negated and it is indefinite.
        if frame in ("trans", "dat", "ditr"):
            assert verb is not None
            if frame == "ditr":
                iobj, _, _, _ = self.noun_phrase(verb.iobj, "dat", avoid, p_adj=0.15)
                c.objects.append(iobj)
            case = "dat" if frame == "dat" else "acc"
            obj, noun, plural, det = self.noun_phrase(verb.obj, case, avoid, negated=c.negated)
            c.objects.append(obj)
            c.kein = det == "kein"
            c.frontable_object = frame == "trans" and not plural and noun.gender == "m" and not c.negated

        if frame == "cop":
            if self.chance(0.7):
                adj = self.pick_adjective(subj_class)
                c.predicate = Phrase(adj.de, adj.en)
            else:
                c.predicate = self.prep_phrase(("loc",), avoid)
        elif verb is not None and verb.pp and (frame == "loc" or self.chance(0.45)):
            c.pp = self.prep_phrase(verb.pp, avoid)

        if not c.negated and self.chance(0.3):
            kinds = {"say": ("freq",), "cop": ("freq", "time")}.get(frame, ("freq", "time", "manner"))
            c.adverb = self.rng.choice([a for a in ADVERBS if a.kind in kinds])
        return c

    # -- sentences -----------------------------------------------------------------------------

    def sentence(self) -> tuple[str, str]:
        shape = self.weighted(SHAPE_WEIGHTS)
        if shape == "simple":
            main = self.clause()
            front = self.main_front(main)
            de, en = main.german_main(front), main.english(self.english_front(front))
        elif shape == "main_sub":
            main, sub = self.clause(), self.clause()
            conj_de, conj_en = self.rng.choice(CONJUNCTIONS)
            front = self.main_front(main)
            de = main.german_main(front) + [","] + sub.german_sub(conj_de)
            en = main.english(self.english_front(front)) + [conj_en] + sub.english()
        elif shape == "sub_main":
            sub, main = self.clause(), self.clause()
            conj_de, conj_en = self.rng.choice(CONJUNCTIONS)
            de = sub.german_sub(conj_de) + [","] + main.german_main("verb")
            en = [conj_en] + sub.english() + [","] + main.english()
        else:
            main, sub = self.clause("say", allow_modal=False), self.clause()
            front = "adverb" if main.adverb is not None and main.adverb.frontable and self.chance(0.4) else "subject"
            de = main.german_main(front) + [",", "dass"] + sub.german_sub()
            en = main.english(front) + ["that"] + sub.english()
        return finish(de), finish(en)

    def main_front(self, c: Clause) -> str:
        """Choose the constituent in the German Vorfeld (before the finite verb)."""
        options = {"subject": 60}
        if c.adverb is not None and c.adverb.frontable:
            options["adverb"] = 40
        if c.pp is not None:
            options["pp"] = 25
        if c.frontable_object:
            options["object"] = 15
        return self.weighted(options)

    @staticmethod
    def english_front(front: str) -> str:
        """English keeps a fronted adverb or prepositional phrase in front, but not a fronted object."""
        return front if front in ("adverb", "pp") else "subject"


# ---------------------------------------------------------------------------------------------
# Corpus
# ---------------------------------------------------------------------------------------------


def generate(
    seed: int = DEFAULT_SEED, n_train: int = 20000, n_val: int = 500, n_test: int = 500
) -> dict[str, list[tuple[str, str]]]:
    """Generate ``n_train + n_val + n_test`` distinct sentence pairs and split them in order."""
    gen = Generator(seed)
    total = n_train + n_val + n_test
    seen: dict[str, str] = {}
    pairs: list[tuple[str, str]] = []
    while len(pairs) < total:
        de, en = gen.sentence()
        if not (MIN_WORDS <= len(de.split()) <= MAX_WORDS and MIN_WORDS <= len(en.split()) <= MAX_WORDS):
            continue
        if de in seen:
            if seen[de] != en:  # the grammar must be unambiguous: one translation per source
                raise AssertionError(f"ambiguous source {de!r}: {seen[de]!r} vs {en!r}")
            continue
        seen[de] = en
        pairs.append((de, en))
    return {"train": pairs[:n_train], "val": pairs[n_train : n_train + n_val], "test": pairs[n_train + n_val :]}


def write_corpus(splits: dict[str, list[tuple[str, str]]], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for split, pairs in splits.items():
        for side in (0, 1):
            path = out / f"{split}.{'de' if side == 0 else 'en'}"
            with path.open("w", encoding="utf-8", newline="\n") as f:
                f.writelines(pair[side] + "\n" for pair in pairs)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: data/synth_de_en)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--train", type=int, default=20000, help="number of training pairs")
    parser.add_argument("--val", type=int, default=500, help="number of validation pairs")
    parser.add_argument("--test", type=int, default=500, help="number of test pairs")
    args = parser.parse_args(argv)
    splits = generate(args.seed, args.train, args.val, args.test)
    write_corpus(splits, args.out)
    for split, pairs in splits.items():
        print(f"{split}: {len(pairs)} pairs -> {args.out / split}.{{de,en}}")


if __name__ == "__main__":
    main()
