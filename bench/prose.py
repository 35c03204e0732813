"""Source text for the generators: English news prose written for this project, and the Arabic
reference article shipped in seeds/. Both are real text; the generators recombine them with a
word-level Markov chain, so the corpora have the word and n-gram statistics of prose rather
than of random strings.
"""

from pathlib import Path

SEED_ARTICLE = Path(__file__).resolve().parent.parent / "seeds" / "000_be3ac5dcbeda0709.txt"

# Written for this project (no third-party text); a few news stories in plain wire style.
ENGLISH = """\
The city council voted on Tuesday to approve a new budget for the coming year, after a debate that lasted well into the night. Members agreed to increase spending on public transport and to delay the planned renovation of the central library until the spring.
The mayor said the decision was a compromise that nobody liked but everybody could accept. She told reporters outside the town hall that the council had listened to residents who asked for more frequent buses and safer crossings near schools.
Opposition members argued that the budget relied on optimistic forecasts of tax revenue. One of them said the city would face hard choices next year if the economy slowed, and that the library had already waited long enough.
The regional weather service warned of heavy rain and strong winds along the coast over the weekend. Forecasters said rivers in the northern valleys could rise quickly and advised people living near them to prepare for possible flooding.
Emergency teams were placed on standby and several schools said they would close early on Friday. The authorities asked drivers to avoid mountain roads and to check the latest warnings before setting out.
Farmers in the area said the rain would be welcome after a long dry summer, but feared that the wind could damage crops that were not yet harvested. Some had worked through the night to bring in what they could.
Shares in technology companies fell sharply on Wednesday as investors worried about rising interest rates and slowing demand for consumer electronics. The main index closed nearly two percent lower, its worst day in more than a month.
Analysts said the market had risen too far too fast and that a correction was overdue. Others pointed to weak sales figures published by two large manufacturers earlier in the week as the reason for the sudden change in mood.
The central bank is expected to announce its decision on interest rates next week. Most economists believe it will raise rates again, although a growing number now think it may pause to see how the economy responds.
A team of researchers at the national university has developed a new method for detecting early signs of disease in crops using images taken by small drones. The method can tell a healthy field from a sick one days before the damage is visible to the eye.
The lead researcher said the work could help farmers use less pesticide, because they would treat only the parts of a field that needed it. The team tested the system on wheat and potatoes over two growing seasons.
The project was funded by a grant from the ministry of agriculture and will now be tried on farms in three regions. The researchers hope to make the software freely available so that small farms can use it as well as large ones.
The national football team qualified for the final tournament after a narrow win in the last match of the group stage. The only goal came ten minutes before the end, when a young striker headed in a corner at the far post.
The coach praised the players for their patience and said the team had grown stronger as the campaign went on. He admitted that they had been lucky at times and that there was much work to do before the tournament began.
Thousands of supporters celebrated in the streets of the capital until the early hours of the morning. The police said the celebrations had been peaceful and that only a handful of people had been arrested.
The government announced on Monday a plan to build thousands of new homes over the next five years, in an effort to ease a housing shortage that has pushed rents to record levels in the largest cities.
The minister for housing said the plan would focus on land that was already owned by the state and on old industrial sites near railway stations. Critics said the target was too low and that the money would not be enough.
Tenants' groups welcomed the announcement but said that new homes would take years to arrive, while families struggled to pay their rent today. They called for limits on rent increases in the meantime.
Health officials reported a rise in cases of seasonal influenza and urged older people and those with chronic illnesses to get vaccinated. Hospitals in several regions said their emergency departments were already busier than usual for the time of year.
Doctors advised people with mild symptoms to stay at home, drink plenty of fluids and avoid visiting relatives in care homes. They said that most people would recover within a week without any special treatment.
The health ministry said it had ordered extra doses of the vaccine and that pharmacies would be able to offer it without an appointment from next month. It also launched a campaign to remind people to wash their hands often.
The museum reopened its doors on Saturday after two years of restoration work that cost far more than planned. Visitors queued for hours to see the newly cleaned paintings and the rebuilt hall that had been damaged by a fire.
The director said the restoration had uncovered details that had been hidden under layers of dirt and old varnish for more than a century. Some of the colours, she said, were much brighter than anyone alive had ever seen them.
Entry to the museum will be free for the first month, and the opening hours will be extended on weekends. Schools can book guided visits through a new website that was launched at the same time.
Negotiators from both sides met again in a neutral country to discuss a possible ceasefire, but officials said there had been little progress. Each side accused the other of making demands that it knew could not be accepted.
A spokesman for the foreign ministry said the talks would continue and that dialogue remained the only way to end the conflict. He declined to say when the next round would take place or who would attend.
Aid agencies warned that the humanitarian situation was getting worse as winter approached. They called on all parties to allow food, medicine and fuel to reach civilians in the areas most affected by the fighting.
The company said on Thursday that it would cut around one thousand jobs as part of a plan to reduce costs after a difficult year. Most of the cuts will fall on administrative staff, and the factories will not be affected.
Union leaders said they were shocked by the announcement and would ask for urgent talks with the management. They said workers had already accepted lower pay rises in recent years to help the company through hard times.
The chief executive said the decision had not been taken lightly and that the company would help those affected to find new work. He said the business remained sound and that it would return to growth next year.
"""


def seed_article() -> str:
    return SEED_ARTICLE.read_text(encoding="utf-8")
